package ws

import "context"

// PublishCounter is implemented by brokers that can tell how many nodes a
// publication was handed to (MemoryBroker, RedisBroker). The Hub's
// requests to every node (Hub.Channels, Hub.Channel, Hub.DisconnectUser,
// Hub.UnsubscribeUser) use it to know how many answers to wait for; with
// a broker that does not implement it they wait Config.ClusterTimeout
// and take the answers that came by then.
type PublishCounter interface {
	// PublishCounted is Publish, and also returns how many nodes had a
	// subscription to channel that the publication was handed to; each
	// receives it unless its own connection to the broker fails first.
	// A negative count means the broker cannot tell this time.
	PublishCounted(ctx context.Context, channel string, payload []byte) (nodes int, err error)
}

var _ PublishCounter = (*MemoryBroker)(nil)

// PublishCounted delivers payload as Publish does and returns 1, or 0
// when nothing is subscribed to channel.
func (b *MemoryBroker) PublishCounted(ctx context.Context, channel string, payload []byte) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return 0, ErrHubClosed
	}
	h := b.handlers[channel]
	if h == nil {
		return 0, nil
	}
	h(payload)
	return 1, nil
}
