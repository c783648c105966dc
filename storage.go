package ws

import (
	"context"
	"encoding/json"
	"time"
)

// PresenceMember is one user in a presence channel, as clients see it in
// the users list of a presence frame.
type PresenceMember struct {
	// UserID is the ID returned by Options.GetUserID for the user.
	UserID string `json:"id"`
	// Info is optional application data about the user (a name, an
	// avatar), from Options.GetUserInfo. It is any JSON value.
	Info json.RawMessage `json:"info,omitempty"`
}

// PresenceConn identifies one connection of a user in a presence channel.
type PresenceConn struct {
	// Channel is the presence channel's name.
	Channel string
	// ConnID is the Client.ID of the connection; unique across the cluster.
	ConnID string
	// Member is the user the connection belongs to.
	Member PresenceMember
}

// PresenceVersion orders the membership changes of one presence channel.
// Two versions of a channel compare only within one Epoch.
type PresenceVersion struct {
	// Epoch names one life of the channel's stored state. It changes when
	// the storage lost that state (Redis restarted without persistence,
	// FLUSHALL, a failover to a replica that lagged) and when a channel
	// whose last member left starts again: the shipped storages forget
	// an empty channel, so its next join opens a new epoch at Seq 1.
	// Epochs are opaque: they are equal or not, never older or newer.
	Epoch string
	// Seq counts the channel's joins and leaves within Epoch: 1, 2, 3,
	// ... with no gap; 0 before any.
	Seq uint64
}

// PresenceEvent is one membership change of a presence channel, decided
// by the storage.
type PresenceEvent struct {
	// Conn names the channel and the member; its ConnID is the
	// connection whose add or removal caused the change.
	Conn PresenceConn
	// Left is false when Conn.Member joined and true when they left.
	Left bool
	// Version is the channel's version right after this change.
	Version PresenceVersion
	// Count is the channel's number of members right after this change.
	Count int
}

// StorageClient keeps presence state that every node of a cluster shares.
//
// Membership is per user, not per connection: a user with three tabs open
// on a channel (on any mix of nodes) is one member, who joins when the
// first of those connections is added and leaves when the last one is
// removed. AddPresence and RemovePresence decide those transitions
// atomically and give each one the channel's next version, so exactly one
// node announces each join and each leave, and every node can put the
// announcements of a channel in the order they happened.
//
// The Hub calls these methods from client goroutines, never from its own
// loop, and always with a context that bounds the call. Implementations
// must be safe for concurrent use. NewMemoryStorage (one process) and
// NewRedisStorage (many nodes) ship with ws.
type StorageClient interface {
	// AddPresence records conn. changed is true, with the join event,
	// when conn is the user's first connection on the channel anywhere
	// in the cluster. Adding a ConnID that is present already is a no-op
	// (changed false).
	AddPresence(ctx context.Context, conn PresenceConn) (ev PresenceEvent, changed bool, err error)

	// RemovePresence removes conn. changed is true, with the leave
	// event, when it was the user's last connection on the channel
	// anywhere in the cluster. Removing a connection that is not present
	// returns changed false and no error.
	RemovePresence(ctx context.Context, conn PresenceConn) (ev PresenceEvent, changed bool, err error)

	// PresenceMembers returns the channel's members, one entry per user,
	// ordered by UserID, and the channel's version, read atomically
	// together: the members are those of that version. A channel with
	// no members may have the zero version.
	PresenceMembers(ctx context.Context, channel string) ([]PresenceMember, PresenceVersion, error)

	// Close releases the storage's resources. The Hub calls it once when
	// Run returns.
	Close() error
}

// PresenceMaintainer is implemented by storages shared between nodes
// (RedisStorage): nodes can die without saying goodbye, and the shared
// store can lose what the nodes wrote.
type PresenceMaintainer interface {
	// MaintainPresence is called by the Hub every MaintainInterval from
	// one goroutine. It removes the connections of nodes that died and
	// restores this node's own live connections that the storage lost,
	// and returns every join and leave that resulted, each exactly once
	// across the cluster, for the Hub to announce. Events already
	// applied are returned even with a non-nil error; a later call
	// finishes the rest.
	MaintainPresence(ctx context.Context) ([]PresenceEvent, error)

	// MaintainInterval is how often the Hub should call
	// MaintainPresence.
	MaintainInterval() time.Duration
}
