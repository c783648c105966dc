package pusher

import (
	"errors"
	"net/http"
	"strings"
	"time"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/bridge"
)

// App is one Pusher app: the credentials its clients and server SDKs
// (Laravel, pusher-http-node, ...) are configured with.
type App struct {
	// ID is the app_id of the HTTP API's paths, /apps/{ID}/....
	ID string
	// Key is the public key clients connect with, /app/{Key}; tokens
	// start with it.
	Key string
	// Secret signs channel tokens, HTTP API requests and webhooks. It
	// never leaves the server.
	Secret string
	// EncryptionMasterKey, 32 bytes, lets AuthHandler authorize
	// private-encrypted- channels: their shared secret is derived from
	// it as Pusher's server SDKs do. Nil refuses those channels there.
	EncryptionMasterKey []byte
}

// Options configure a Pusher endpoint. Every field is optional.
type Options struct {
	// Options are the hooks and limits of the endpoint, as for
	// ws.ServeWS: GetUserID, AuthHandler or AuthProvider and GetUserInfo
	// decide both subscriptions without a token and AuthHandler's
	// answers, so one set of rules guards both protocols; ErrorHandler,
	// Middleware, OnConnect and OnDisconnect work as there.
	// EnableWhispers allows client events (Pusher's "client events"
	// setting), WhisperMiddleware and MaxWhisperSize apply to them.
	// WhisperPrivateOnly is always on: Pusher allows client events on
	// private and presence channels only.
	ws.Options

	// ActivityTimeout is what connection_established tells clients: how
	// long a quiet client waits before it sends pusher:ping. Zero means
	// the hub's PingInterval, so a client whose WebSocket library does
	// not answer the hub's pings still stays well within PongTimeout.
	ActivityTimeout time.Duration
	// ClientEventsPerSecond bounds the client events of one connection;
	// over it an event is dropped and answered with pusher:error 4301.
	// Zero means DefaultClientEventsPerSecond; negative, no limit.
	ClientEventsPerSecond int
	// MaxEventBytes bounds the data of one event published through the
	// HTTP API; over it the request is refused with 413. Zero means
	// 10 KiB, Pusher's limit.
	MaxEventBytes int

	// Webhooks, when set, sends the app's webhooks (see Webhooks).
	Webhooks *Webhooks
}

// DefaultMaxEventBytes is Pusher's limit on the data of one event.
const DefaultMaxEventBytes = 10 << 10

// Server serves one Pusher app on a ws.Hub: the WebSocket endpoint
// /app/{key} for Pusher clients, and the HTTP API /apps/{id}/... for
// server SDKs. Its channels, presence and whispers are the hub's, shared
// with ws's native clients. It is an http.Handler; AuthHandler and
// UserAuthHandler are the authorization endpoints for apps whose backend
// is the Go service itself.
type Server struct {
	hub   *ws.Hub
	app   App
	opts  ws.Options // Options.Options with the Pusher rules applied
	proto *protocol
	index int   // the protocol's index on hub
	err   error // why the server cannot serve

	maxEventBytes int
	hooks         *Webhooks
}

// New returns the Pusher server of app on hub. It registers the Pusher
// protocol with hub (up to three Servers per hub). A problem (an App
// field missing, too many protocols) is reported by Err and answered
// with 500 by every request.
func New(hub *ws.Hub, app App, opts *Options) *Server {
	if opts == nil {
		opts = &Options{}
	}
	s := &Server{hub: hub, app: app, opts: opts.Options, maxEventBytes: opts.MaxEventBytes, hooks: opts.Webhooks}
	if s.maxEventBytes <= 0 {
		s.maxEventBytes = DefaultMaxEventBytes
	}
	activity := opts.ActivityTimeout
	if activity <= 0 {
		activity = hub.Config().PingInterval
	}
	perSecond := opts.ClientEventsPerSecond
	if perSecond == 0 {
		perSecond = DefaultClientEventsPerSecond
	}
	s.proto = &protocol{app: app, activityTimeout: max(1, int(activity/time.Second)), clientEvents: clientEventLimit{perSecond: perSecond}}
	switch {
	case app.ID == "" || app.Key == "" || app.Secret == "":
		s.err = errors.New("pusher: App needs an ID, a Key and a Secret")
		return s
	case strings.ContainsAny(app.Key, "/?#:") || strings.Contains(app.ID, "/"):
		s.err = errors.New("pusher: App.Key must not contain / ? # or :, nor App.ID /")
		return s
	case app.EncryptionMasterKey != nil && len(app.EncryptionMasterKey) != 32:
		s.err = errors.New("pusher: App.EncryptionMasterKey must be 32 bytes")
		return s
	}
	if s.index, s.err = bridge.AddProtocol(hub, s.proto); s.err != nil {
		return s
	}
	s.applyRules()
	if s.hooks != nil {
		s.hooks.start(s)
	}
	return s
}

// applyRules adapts the endpoint's ws.Options to Pusher: client events on
// private and presence channels only, the protocol's per-connection state
// dropped when a connection ends, and client_event webhooks.
func (s *Server) applyRules() {
	s.opts.WhisperPrivateOnly = true
	onDisconnect := s.opts.OnDisconnect
	s.opts.OnDisconnect = func(c *ws.Client) {
		s.proto.forget(c.ID)
		if onDisconnect != nil {
			onDisconnect(c)
		}
	}
	if s.hooks != nil {
		mw := s.opts.WhisperMiddleware
		s.opts.WhisperMiddleware = func(w *ws.WhisperEvent) bool {
			if mw != nil && !mw(w) {
				return false
			}
			s.hooks.clientEvent(w)
			return true
		}
	}
}

// Err returns why the server cannot serve, or nil.
func (s *Server) Err() error { return s.err }

// App returns the app the server serves.
func (s *Server) App() App { return s.app }

// ServeHTTP serves the WebSocket endpoint at any path ending in
// /app/{key} (pusher-js's wsPath may put a prefix before it) and the
// HTTP API at any path containing /apps/{id}/ (a server SDK's path
// prefix likewise). Everything else is 404.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.err != nil {
		http.Error(w, "Internal Server Error: "+s.err.Error(), http.StatusInternalServerError)
		return
	}
	path := r.URL.Path
	if i := strings.Index(path, "/apps/"); i >= 0 {
		s.serveAPI(w, r, path[i+len("/apps/"):])
		return
	}
	if i := strings.LastIndex(path, "/app/"); i >= 0 && !strings.Contains(path[i+len("/app/"):], "/") {
		s.serveWS(w, r, path[i+len("/app/"):])
		return
	}
	http.NotFound(w, r)
}
