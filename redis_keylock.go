package ws

import (
	"context"
	"sync"
)

// keyLock serialises operations on one key (a channel, a connection)
// while letting different keys proceed in parallel. Unlike a mutex,
// waiting for it honours a context, so a Redis round trip made while
// holding it never holds up a caller past its deadline.
type keyLock struct {
	mu   sync.Mutex
	held map[string]chan struct{} // guarded by mu; closed on release
}

// lock waits until key is free or ctx is done, and returns the release
// function.
func (l *keyLock) lock(ctx context.Context, key string) (unlock func(), err error) {
	for {
		l.mu.Lock()
		if l.held == nil {
			l.held = make(map[string]chan struct{})
		}
		wait, busy := l.held[key]
		if !busy {
			done := make(chan struct{})
			l.held[key] = done
			l.mu.Unlock()
			return func() {
				l.mu.Lock()
				delete(l.held, key)
				l.mu.Unlock()
				close(done)
			}, nil
		}
		l.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
