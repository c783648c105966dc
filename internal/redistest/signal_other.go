//go:build !unix

package redistest

import "errors"

var errNoStop = errors.New("redistest: SIGSTOP/SIGCONT need a unix system")

// Stop freezes the server; it needs SIGSTOP, which this system lacks.
func (s *Server) Stop() error { return errNoStop }

// Cont resumes a server frozen by Stop; see Stop.
func (s *Server) Cont() error { return errNoStop }
