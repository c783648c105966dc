//go:build unix

package redistest

import (
	"fmt"
	"syscall"
)

// Stop freezes the server with SIGSTOP, as a stalled host or a long
// pause would: its connections stay open but nothing is answered until
// Cont. A stopped server is still killed when the test ends.
func (s *Server) Stop() error { return s.signal(syscall.SIGSTOP) }

// Cont resumes a server frozen by Stop with SIGCONT.
func (s *Server) Cont() error { return s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run == nil {
		return fmt.Errorf("redis-server on %d is not running", s.Port)
	}
	return s.run.cmd.Process.Signal(sig)
}
