package ws

import (
	"context"
	"sync"
)

// MemoryBroker is a MessageBroker for a single process: Publish calls the
// channel's handler directly, on the publishing goroutine. It is the
// default when NewHub is given a nil broker. It keeps channel history in
// memory (memory_history.go), under epochs that are new with every
// MemoryBroker.
type MemoryBroker struct {
	mu       sync.RWMutex
	handlers map[string]func([]byte) // guarded by mu
	closed   bool                    // guarded by mu

	history memoryHistory
}

var (
	_ MessageBroker = (*MemoryBroker)(nil)
	_ HistoryBroker = (*MemoryBroker)(nil)
)

// NewMemoryBroker returns an empty in-process broker.
func NewMemoryBroker() *MemoryBroker {
	b := &MemoryBroker{handlers: make(map[string]func([]byte))}
	b.history.init()
	return b
}

// Publish delivers payload to channel's handler before it returns.
// Publications from one goroutine arrive in order; concurrent publishers
// are serialised per channel by the read lock's ordering only, so callers
// that need a global order must publish from one goroutine.
func (b *MemoryBroker) Publish(ctx context.Context, channel string, payload []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrHubClosed
	}
	if h := b.handlers[channel]; h != nil {
		h(payload)
	}
	return nil
}

// Subscribe registers handler for channel.
func (b *MemoryBroker) Subscribe(ctx context.Context, channel string, handler func([]byte)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrHubClosed
	}
	b.handlers[channel] = handler
	return nil
}

// Unsubscribe removes channel's handler. Once it returns no Publish is
// still calling it, since Publish holds the read lock while it does.
func (b *MemoryBroker) Unsubscribe(ctx context.Context, channel string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.handlers, channel)
	return nil
}

// Close drops every subscription; later calls fail with ErrHubClosed.
func (b *MemoryBroker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	clear(b.handlers)
	return nil
}

// Healthy reports true until Close.
func (b *MemoryBroker) Healthy() bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return !b.closed
}
