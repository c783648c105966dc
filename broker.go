package ws

import "context"

// MessageBroker carries publications between the nodes of a cluster.
//
// The Hub owns its broker: it calls Subscribe when the first local client
// joins a channel and Unsubscribe when the last one leaves, so a broker
// holds at most one subscription per channel per node. Payloads are opaque
// bytes produced by the Hub; a broker must deliver them unchanged.
//
// Implementations must be safe for concurrent use. NewMemoryBroker (one
// process) and NewRedisBroker (many nodes) are the two that ship with ws.
type MessageBroker interface {
	// Publish sends payload to every subscriber of channel on every node,
	// this node included, exactly once each while the broker is healthy.
	// Publications made by one goroutine on one channel are delivered in
	// the order they were published. Publish returns an error when the
	// publication could not be handed to the transport (for example Redis
	// is unreachable): one wrapping ErrPublishUncertain when it may have
	// been handed over all the same (retrying may deliver it twice), any
	// other meaning it was not. It does not wait for delivery. It may
	// block for network I/O and must honour ctx.
	Publish(ctx context.Context, channel string, payload []byte) error

	// Subscribe starts delivering channel's publications to handler. It
	// returns only once the subscription is confirmed, so every
	// publication made after Subscribe returns reaches handler. handler is
	// called from one goroutine per broker (or per channel), one payload
	// at a time, in publication order; it must not block and must not
	// keep payload after it returns unless it copies it. A broker that
	// can lose publications while it reconnects (RedisBroker) calls
	// handler with an empty payload once the subscription is live again,
	// before the publications that follow: the Hub then reads back what a
	// history channel missed. The Hub calls Subscribe at most once per
	// channel until the matching Unsubscribe. It may block for network
	// I/O and must honour ctx.
	Subscribe(ctx context.Context, channel string, handler func(payload []byte)) error

	// Unsubscribe stops delivery for channel. Once it returns, handler is
	// not called again for that channel. Unsubscribing a channel that is
	// not subscribed is not an error. It may block for network I/O.
	Unsubscribe(ctx context.Context, channel string) error

	// Close releases the broker's resources. The Hub calls it once when
	// Run returns; no other method is called after Close.
	Close() error
}

// BrokerHealth is implemented by brokers that can lose their connection
// (RedisBroker). The Hub reports it in Stats and in its health handler.
type BrokerHealth interface {
	// Healthy reports whether the broker is currently connected and its
	// subscriptions are live. It must not block.
	Healthy() bool
}

// BrokerSubscription is one channel of a BatchSubscriber call.
type BrokerSubscription struct {
	Channel string
	Handler func(payload []byte)
}

// BatchSubscriber is implemented by brokers that can subscribe and
// unsubscribe many channels in one round trip (RedisBroker). The Hub makes
// its broker calls from one goroutine, a batch at a time; with a
// BatchSubscriber a batch costs one call each way instead of one per
// channel, which is what keeps a reconnect storm over thousands of
// channels quick. The contract of each channel is that of Subscribe and
// Unsubscribe.
type BatchSubscriber interface {
	// SubscribeBatch subscribes every channel of subs and returns one
	// error per entry (nil: confirmed), in order.
	SubscribeBatch(ctx context.Context, subs []BrokerSubscription) []error
	// UnsubscribeBatch unsubscribes every channel in channels.
	UnsubscribeBatch(ctx context.Context, channels []string) error
}

// HistoryBroker is implemented by brokers that keep channel history
// (MemoryBroker and RedisBroker). With a broker that does not implement
// it, Config.History has no effect: no channel has history, and
// subscribers get no offsets (docs/recovery.md).
//
// A channel's history is the latest publications made with
// PublishHistory, each with an offset: 1, 2, 3, ... in the order they
// were published, cluster-wide. The offsets count within an epoch, a
// name for one life of the channel's history: when the broker loses the
// history (a restart, its data flushed or expired) the channel starts
// again from offset 1 under a new epoch, so a position of the old life
// is never mistaken for one of the new.
type HistoryBroker interface {
	MessageBroker

	// PublishHistory publishes payload on channel as Publish does and
	// keeps it in the channel's history, as one step: it gives the
	// publication the channel's next offset, appends it to the history,
	// trims the history to opts.Size publications, makes the history
	// expire opts.TTL after this publication, and sends it to the
	// subscribers, so that they receive the channel's history
	// publications in offset order. Subscribers are handed the
	// publication's position in front of payload: the byte 'h', the
	// offset in decimal, ':', the epoch, ':', then payload (the epoch is
	// 1 to 64 bytes without ':'). A broker may hand several publications
	// of one channel, in offset order, in one call: the byte 'H', then
	// for each its length in decimal, ':' and the publication as above.
	// It returns the publication's position; its errors are those of
	// Publish.
	PublishHistory(ctx context.Context, channel string, payload []byte, opts HistoryOptions) (HistoryPosition, error)

	// ReadHistory returns the channel's latest position, the oldest
	// offset it still keeps and the publications r selects, read
	// together. A channel that has no history yet gets an epoch (and
	// offset 0) here, so a subscriber that comes before the first
	// publication has a position to resume from. It may block for
	// network I/O and must honour ctx.
	ReadHistory(ctx context.Context, channel string, r HistoryRange) (HistoryPage, error)
}

// HistoryRange selects publications of a channel's history for
// ReadHistory.
type HistoryRange struct {
	// After: publications with an offset above After.
	After uint64
	// Until: and at most Until. Zero means up to the latest.
	Until uint64
	// Limit caps how many are returned. Zero means none: only the
	// position is read.
	Limit int
	// Reverse returns the newest first: the Limit newest of the range.
	Reverse bool
}

// HistoryPage is what ReadHistory returns.
type HistoryPage struct {
	// Latest is the channel's epoch and the offset of its latest
	// publication (0 before the first).
	Latest HistoryPosition
	// Oldest is the offset of the oldest publication still kept, or
	// Latest.Offset+1 when none is.
	Oldest uint64
	// Entries are the publications selected, in offset order (newest
	// first with Reverse).
	Entries []HistoryEntry
}

// HistoryEntry is one publication kept in a channel's history.
type HistoryEntry struct {
	Offset uint64
	// Payload is as it was given to PublishHistory. Readers must not
	// modify it.
	Payload []byte
}
