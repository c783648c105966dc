package ws

import (
	"errors"
	"io"
	"log/slog"
	"strconv"
	"time"
)

// RateLimit bounds how many frames one connection may send: a token
// bucket refilled at Messages per Interval, with a burst of Messages.
// docs/security.md describes what a client over the limit sees.
type RateLimit struct {
	// Messages allowed per Interval. Zero disables the limit.
	Messages int
	// Interval over which Messages are allowed. Zero with Messages > 0
	// means one second.
	Interval time.Duration
}

// Config tunes a Hub. It is passed by value; the zero value of every field
// means the default written on it, so Config{} is a working configuration.
type Config struct {
	// PingInterval is how often the server pings each connection.
	// Zero means 30s.
	PingInterval time.Duration
	// PongTimeout is how long a connection may stay silent (no frame, no
	// pong) before it is closed. It must exceed PingInterval.
	// Zero means twice PingInterval.
	PongTimeout time.Duration
	// WriteTimeout bounds every socket write. Zero means 10s.
	WriteTimeout time.Duration

	// ReadBufferSize, when above zero, gives each connection a read
	// buffer of its own of that many bytes, kept for the connection's
	// life. Zero (the default) reads each frame through a 2 KiB buffer
	// borrowed from a pool and returned once what it read has been
	// handled: as few system calls for a burst of small frames, and no
	// read buffer on an idle connection.
	ReadBufferSize int
	// WriteBufferSize is the buffer gorilla/websocket uses for the
	// upgrade response. Frames are written straight from bytes encoded
	// once per publication and shared, so no per-connection write buffer
	// is kept. Zero reuses net/http's buffer.
	WriteBufferSize int
	// MaxMessageSize is the largest client frame accepted, in bytes; a
	// larger one closes the connection with 1009 (message too big).
	// Zero means 64 KiB.
	MaxMessageSize int64

	// EnableCompression lets clients negotiate permessage-deflate (RFC
	// 7692), which every browser offers. Each message is compressed on
	// its own (no context takeover, either way): a publication is
	// compressed once per protocol and the compressed frame shared by
	// every subscriber that negotiated compression, and no connection
	// keeps a compression window. Compressed client frames are accepted
	// and held to MaxMessageSize after inflating. The default declines
	// compression.
	EnableCompression bool
	// CompressionLevel is the compress/flate level, 1 (fastest) to 9
	// (smallest). Zero means 1: on chat-sized JSON the levels differ by
	// a point or two of saving and several times in CPU.
	CompressionLevel int
	// CompressionThreshold is the smallest frame payload, in bytes, that
	// is compressed; shorter ones (acknowledgements, pongs, small
	// publications) go uncompressed, as does any frame that compression
	// would not shrink. Zero means 128.
	CompressionThreshold int

	// Subprotocols lists the WebSocket subprotocols (Sec-WebSocket-Protocol)
	// the server speaks, in its order of preference. A client that offers
	// some gets the first of these it offered, which Client.Subprotocol
	// reports; a client that offers some but none of these is refused
	// with 400 and the reason; a client that offers none is accepted
	// with none. Empty (the default) selects nothing: a client offering
	// a subprotocol is upgraded without one, which browsers treat as a
	// failed connection.
	Subprotocols []string

	// SendQueueSize is how many frames may wait to be written to one
	// connection. A client whose queue is full is disconnected as a slow
	// consumer (close code 4008) rather than slowing anyone else down.
	// Zero means 1024.
	SendQueueSize int
	// SendQueueBytes bounds the bytes waiting for one connection, with the
	// same slow-consumer policy. Zero means 4 MiB.
	SendQueueBytes int

	// RateLimit bounds frames per connection. Zero means unlimited.
	RateLimit RateLimit

	// MaxConnections caps the connections this node accepts. Zero means
	// no limit.
	MaxConnections int
	// MaxConnectionsPerIP caps the connections from one client IP on this
	// node. Zero means no limit.
	MaxConnectionsPerIP int
	// MaxChannelsPerClient caps the channels one connection may be
	// subscribed to at once. Zero means 100.
	MaxChannelsPerClient int

	// AllowedOrigins lists the Origin header values accepted, with "*"
	// wildcards (https://*.example.com). Empty means same-origin only
	// (the Origin host must equal the request Host), as gorilla does; a
	// request without an Origin header (a non-browser client) is accepted.
	AllowedOrigins []string

	// PresenceUsersLimit is the largest presence channel whose join and
	// leave frames still carry the full users list. Above it they carry
	// only the user who joined or left and the member count, so a join
	// costs O(1) frame bytes instead of O(members). Zero means 100.
	PresenceUsersLimit int

	// History decides which channels keep a history of their latest
	// publications, and how much (HistoryOptions). On such a channel
	// every publication gets an offset, subscribers see it, and a client
	// that reconnects subscribes with "since" to get what it missed
	// (docs/recovery.md). Nil (the default) means no channel keeps
	// history. It is called with a channel's name on every publication
	// and when a channel gets its first subscriber on this node, on the
	// hub's own goroutine: it must be fast, must not block, and must give
	// the same answer on every node. It has no effect when the broker
	// keeps no history (see HistoryBroker).
	History func(channel string) HistoryOptions

	// ShouldLogStats logs a statistics line every StatsInterval through
	// Logger.
	ShouldLogStats bool
	// StatsInterval is how often statistics are logged. Zero means 1m.
	StatsInterval time.Duration

	// Logger receives the hub's log lines. Nil means silent.
	Logger *slog.Logger

	// OnChannelOccupied is called once per cluster when a channel gets
	// its first subscriber on any node, and OnChannelVacated once per
	// cluster when it has lost its last subscriber on every node (also
	// when the node holding the last ones died: then at most NodeTTL +
	// ReapInterval later, on a surviving node). For a channel they
	// alternate, starting with OnChannelOccupied. They run on the hub's
	// hook goroutine, one hook at a time (see docs/cluster.md); neither
	// may block for long. Set them on every node of a cluster or on
	// none: occupancy is recorded only by nodes that have one set.
	OnChannelOccupied func(channel string)
	OnChannelVacated  func(channel string)

	// ClusterTimeout bounds how long Hub.Channels, Hub.Channel,
	// Hub.DisconnectUser and Hub.UnsubscribeUser wait for every node's
	// answer (a sooner ctx deadline wins). Zero means 2s.
	ClusterTimeout time.Duration
}

const (
	defaultPingInterval   = 30 * time.Second
	defaultWriteTimeout   = 10 * time.Second
	defaultMaxMessageSize = 64 << 10
	defaultCompressLevel  = 1
	defaultCompressMin    = 128
	defaultSendQueueSize  = 1024
	defaultSendQueueBytes = 4 << 20
	defaultMaxChannels    = 100
	defaultPresenceLimit  = 100
	defaultStatsInterval  = time.Minute
	defaultClusterTimeout = 2 * time.Second
)

// withDefaults returns c with every zero field replaced by its default.
func (c Config) withDefaults() Config {
	if c.PingInterval == 0 {
		c.PingInterval = defaultPingInterval
	}
	if c.PongTimeout == 0 {
		c.PongTimeout = 2 * c.PingInterval
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = defaultWriteTimeout
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = defaultMaxMessageSize
	}
	if c.CompressionLevel == 0 {
		c.CompressionLevel = defaultCompressLevel
	}
	if c.CompressionThreshold == 0 {
		c.CompressionThreshold = defaultCompressMin
	}
	if c.SendQueueSize == 0 {
		c.SendQueueSize = defaultSendQueueSize
	}
	if c.SendQueueBytes == 0 {
		c.SendQueueBytes = defaultSendQueueBytes
	}
	if c.RateLimit.Messages > 0 && c.RateLimit.Interval == 0 {
		c.RateLimit.Interval = time.Second
	}
	if c.MaxChannelsPerClient == 0 {
		c.MaxChannelsPerClient = defaultMaxChannels
	}
	if c.PresenceUsersLimit == 0 {
		c.PresenceUsersLimit = defaultPresenceLimit
	}
	if c.StatsInterval == 0 {
		c.StatsInterval = defaultStatsInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.ClusterTimeout == 0 {
		c.ClusterTimeout = defaultClusterTimeout
	}
	return c
}

// Validate reports the first impossible setting in c, as a *ConfigError
// naming the field and what is wrong with it. Zero fields are valid: they
// take their defaults.
func (c Config) Validate() error {
	var errs []error
	neg := func(field string, v int64) {
		if v < 0 {
			errs = append(errs, &ConfigError{Field: field, Reason: "must not be negative"})
		}
	}
	neg("PingInterval", int64(c.PingInterval))
	neg("PongTimeout", int64(c.PongTimeout))
	neg("WriteTimeout", int64(c.WriteTimeout))
	neg("ReadBufferSize", int64(c.ReadBufferSize))
	neg("WriteBufferSize", int64(c.WriteBufferSize))
	neg("MaxMessageSize", c.MaxMessageSize)
	neg("CompressionThreshold", int64(c.CompressionThreshold))
	if c.CompressionLevel < 0 || c.CompressionLevel > 9 {
		errs = append(errs, &ConfigError{Field: "CompressionLevel",
			Reason: "must be 1 (fastest) to 9 (smallest), or zero for 1; got " + strconv.Itoa(c.CompressionLevel)})
	}
	errs = append(errs, validSubprotocols(c.Subprotocols)...)
	neg("SendQueueSize", int64(c.SendQueueSize))
	neg("SendQueueBytes", int64(c.SendQueueBytes))
	neg("RateLimit.Messages", int64(c.RateLimit.Messages))
	neg("RateLimit.Interval", int64(c.RateLimit.Interval))
	neg("MaxConnections", int64(c.MaxConnections))
	neg("MaxConnectionsPerIP", int64(c.MaxConnectionsPerIP))
	neg("MaxChannelsPerClient", int64(c.MaxChannelsPerClient))
	neg("PresenceUsersLimit", int64(c.PresenceUsersLimit))
	neg("StatsInterval", int64(c.StatsInterval))
	neg("ClusterTimeout", int64(c.ClusterTimeout))
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	d := c.withDefaults()
	if d.PongTimeout <= d.PingInterval {
		errs = append(errs, &ConfigError{Field: "PongTimeout",
			Reason: "must exceed PingInterval (" + d.PingInterval.String() + "), or no pong could ever arrive in time; got " + d.PongTimeout.String()})
	}
	if c.MaxConnections > 0 && c.MaxConnectionsPerIP > c.MaxConnections {
		errs = append(errs, &ConfigError{Field: "MaxConnectionsPerIP",
			Reason: "exceeds MaxConnections; lower it or raise MaxConnections"})
	}
	if c.RateLimit.Interval > 0 && c.RateLimit.Messages == 0 {
		errs = append(errs, &ConfigError{Field: "RateLimit.Messages",
			Reason: "is zero while RateLimit.Interval is set; set both, or neither to disable the limit"})
	}
	if d.SendQueueBytes < int(d.MaxMessageSize) && c.SendQueueBytes != 0 {
		errs = append(errs, &ConfigError{Field: "SendQueueBytes",
			Reason: "is smaller than MaxMessageSize, so one whisper could overflow a queue"})
	}
	for _, o := range c.AllowedOrigins {
		if o == "" {
			errs = append(errs, &ConfigError{Field: "AllowedOrigins", Reason: "contains an empty pattern"})
		} else if _, ok := parseOrigin(o, true); !ok && o != "*" {
			errs = append(errs, &ConfigError{Field: "AllowedOrigins",
				Reason: "pattern " + strconv.Quote(o) + " is not scheme://host[:port] (no path; '*' may stand for host labels or the port)"})
		}
	}
	return errors.Join(errs...)
}
