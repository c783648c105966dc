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

// StorageClient keeps presence state that every node of a cluster shares.
//
// Membership is per user, not per connection: a user with three tabs open
// on a channel (on any mix of nodes) is one member, who joins when the
// first of those connections is added and leaves when the last one is
// removed. AddPresence and RemovePresence report those transitions
// atomically, so exactly one node announces each join and each leave.
//
// The Hub calls these methods from client goroutines, never from its own
// loop, and always with a context that bounds the call. Implementations
// must be safe for concurrent use. NewMemoryStorage (one process) and
// NewRedisStorage (many nodes) ship with ws.
type StorageClient interface {
	// AddPresence records conn. joined is true when conn is the user's
	// first connection on the channel anywhere in the cluster. Adding a
	// ConnID that is already present is a no-op that returns false.
	AddPresence(ctx context.Context, conn PresenceConn) (joined bool, err error)

	// RemovePresence removes conn. left is true when it was the user's
	// last connection on the channel anywhere in the cluster. Removing a
	// connection that is not present returns false and no error.
	RemovePresence(ctx context.Context, conn PresenceConn) (left bool, err error)

	// PresenceMembers returns the channel's members, one entry per user,
	// ordered by UserID.
	PresenceMembers(ctx context.Context, channel string) ([]PresenceMember, error)

	// Close releases the storage's resources. The Hub calls it once when
	// Run returns.
	Close() error
}

// PresenceReaper is implemented by storages shared between nodes that can
// die without saying goodbye (RedisStorage). The Hub calls ReapPresence
// every ReapInterval; it removes the connections of nodes whose heartbeat
// has expired and returns the users who thereby left, so the Hub can
// announce each leave once.
type PresenceReaper interface {
	// ReapPresence removes expired connections and returns one entry per
	// user who left a channel as a result (Member and Channel set; ConnID
	// is the last connection removed). It is safe to call from several
	// nodes at once: each departure is returned by exactly one caller.
	// Departures already removed are returned even when err is not nil;
	// the Hub announces them before it handles the error.
	ReapPresence(ctx context.Context) ([]PresenceConn, error)

	// ReapInterval is how often the Hub should call ReapPresence.
	ReapInterval() time.Duration
}
