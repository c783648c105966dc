package ws_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
)

// authCalls records the authorization hooks the hub called.
type authCalls struct {
	mu      sync.Mutex
	handler []string // "user channel", guarded by mu
	prov    []string // guarded by mu
	ctxErrs []error  // ctx.Err() of each provider call, guarded by mu
}

func (a *authCalls) handlerCalls() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.handler...)
}

func (a *authCalls) providerCalls() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.prov...)
}

var errNotMember = errors.New("not a member of this team")

// TestPrivateAndPresenceSubscribeAuthorization drives every combination
// of the two authorization hooks through a real connection, on a private
// and a presence channel: who decides, what the client sees and what
// ErrorHandler gets.
func TestPrivateAndPresenceSubscribeAuthorization(t *testing.T) {
	// The hooks allow a channel unless its name contains their "no" word,
	// so one channel name can be allowed by one hook and refused by the
	// other.
	handlerSays := func(a *authCalls) func(string, string) bool {
		return func(user, channel string) bool {
			a.mu.Lock()
			a.handler = append(a.handler, user+" "+channel)
			a.mu.Unlock()
			return !strings.Contains(channel, "handlerno")
		}
	}
	providerSays := func(a *authCalls) ws.AuthProvider {
		return ws.AuthFunc(func(ctx context.Context, user, channel string) error {
			a.mu.Lock()
			a.prov = append(a.prov, user+" "+channel)
			a.ctxErrs = append(a.ctxErrs, ctx.Err())
			a.mu.Unlock()
			if strings.Contains(channel, "providerno") {
				return errNotMember
			}
			return nil
		})
	}
	cases := []struct {
		name         string
		handler      bool // set Options.AuthHandler
		provider     bool // set Options.AuthProvider
		user         string
		channel      string // without the private-/presence- prefix
		allowed      bool
		reason       string // substring of AuthError.Reason when refused
		cause        error  // AuthError.Err when refused
		wantHandler  int    // AuthHandler calls
		wantProvider int    // AuthProvider calls
	}{
		{name: "handler allows", handler: true, user: "alice", channel: "team-1", allowed: true, wantHandler: 1},
		{name: "handler refuses", handler: true, user: "alice", channel: "handlerno-1", reason: "refused by AuthHandler", wantHandler: 1},
		{name: "provider allows", provider: true, user: "alice", channel: "team-1", allowed: true, wantProvider: 1},
		{name: "provider refuses", provider: true, user: "alice", channel: "providerno-1", reason: "refused by AuthProvider", cause: errNotMember, wantProvider: 1},
		{name: "both set, provider allows what handler would refuse", handler: true, provider: true, user: "alice", channel: "handlerno-1", allowed: true, wantProvider: 1},
		{name: "both set, provider refuses what handler would allow", handler: true, provider: true, user: "alice", channel: "providerno-1", reason: "refused by AuthProvider", cause: errNotMember, wantProvider: 1},
		{name: "none set", user: "alice", channel: "team-1", reason: "no AuthHandler or AuthProvider is configured"},
		{name: "anonymous with handler", handler: true, channel: "team-1", reason: "anonymous"},
		{name: "anonymous with provider", provider: true, channel: "team-1", reason: "anonymous"},
		{name: "anonymous with both", handler: true, provider: true, channel: "team-1", reason: "anonymous"},
	}
	for _, prefix := range []string{ws.PrivatePrefix, ws.PresencePrefix} {
		for _, tc := range cases {
			t.Run(prefix+tc.name, func(t *testing.T) {
				var calls authCalls
				var log errorLog
				opts := &ws.Options{
					GetUserID:    func(r *http.Request) string { return r.Header.Get("X-User") },
					ErrorHandler: log.handle,
				}
				if tc.handler {
					opts.AuthHandler = handlerSays(&calls)
				}
				if tc.provider {
					opts.AuthProvider = providerSays(&calls)
				}
				n := newNode(t, nil, nil, ws.Config{}, opts)
				channel := prefix + tc.channel
				c := n.dial(t, tc.user)
				c.send(map[string]any{"action": "subscribe", "channel": channel})

				if tc.allowed {
					c.expect(map[string]any{"type": "subscribed", "channel": channel})
					if prefix == ws.PresencePrefix {
						c.expectPresence(channel, "members", "", []string{tc.user}, 1)
					}
					require.NoError(t, n.hub.Publish(context.Background(), channel, "hello"))
					c.expect(map[string]any{"type": "message", "channel": channel, "message": "hello"})
				} else {
					m := c.expect(map[string]any{"type": "error", "code": ws.CodeUnauthorized, "action": "subscribe", "channel": channel})
					require.Contains(t, m["error"], channel, "the error text names the channel")
					if tc.cause != nil {
						require.NotContains(t, m["error"], tc.cause.Error(), "the provider's error text stays on the server")
					}
					ae := lastError[*ws.AuthError](t, &log)
					require.Equal(t, tc.user, ae.UserID)
					require.Equal(t, channel, ae.Channel)
					require.Contains(t, ae.Reason, tc.reason)
					if tc.cause != nil {
						require.ErrorIs(t, ae, tc.cause, "AuthError unwraps to the provider's error")
					}
					// Refused means not subscribed: no publication, no presence.
					require.NoError(t, n.hub.Publish(context.Background(), channel, "hello"))
					c.expectQuiet()
					require.Empty(t, n.members(t, channel))
				}
				require.Len(t, calls.handlerCalls(), tc.wantHandler, "AuthHandler calls %v", calls.handlerCalls())
				require.Len(t, calls.providerCalls(), tc.wantProvider, "AuthProvider calls %v", calls.providerCalls())
				if tc.wantHandler > 0 {
					require.Equal(t, tc.user+" "+channel, calls.handlerCalls()[0])
				}
				if tc.wantProvider > 0 {
					require.Equal(t, tc.user+" "+channel, calls.providerCalls()[0])
					calls.mu.Lock()
					require.NoError(t, calls.ctxErrs[0], "AuthProvider gets the live request context")
					calls.mu.Unlock()
				}
			})
		}
	}
}

// TestPublicChannelsNeedNoAuthorization checks the hooks guard only
// private- and presence- channels: public channels work for anonymous
// users even with no hook, and a refusing hook is not asked about them.
func TestPublicChannelsNeedNoAuthorization(t *testing.T) {
	var calls authCalls
	opts := &ws.Options{AuthHandler: func(user, channel string) bool {
		calls.mu.Lock()
		calls.handler = append(calls.handler, user+" "+channel)
		calls.mu.Unlock()
		return false
	}}
	n := newNode(t, nil, nil, ws.Config{}, opts)
	c := n.dial(t, "")
	for _, ch := range []string{"news", "privatenews", "presence", "my-private-room"} {
		c.subscribe(ch)
	}
	require.Empty(t, calls.handlerCalls())
}

// TestClientPublishIsRefusedOnEveryChannelKind checks that a client can
// never publish, least of all into a private or presence channel it is
// subscribed to: the frame is answered with a forbidden error naming the
// action and channel, and no subscriber receives anything.
func TestClientPublishIsRefusedOnEveryChannelKind(t *testing.T) {
	for _, channel := range []string{"news", "private-orders", "presence-room-1"} {
		t.Run(channel, func(t *testing.T) {
			var log errorLog
			n := newNode(t, nil, nil, ws.Config{}, presenceOptions(&log))
			sender, other := n.dial(t, "mallory"), n.dial(t, "bob")
			for _, c := range []*testClient{other, sender} {
				c.subscribe(channel)
				if strings.HasPrefix(channel, ws.PresencePrefix) {
					c.next() // the member list
				}
			}
			if strings.HasPrefix(channel, ws.PresencePrefix) {
				other.expectPresence(channel, "join", "mallory", []string{"bob", "mallory"}, 2)
			}
			sender.send(map[string]any{"action": "publish", "channel": channel, "message": "fake", "event": "x", "data": 1})
			sender.expect(map[string]any{"type": "error", "code": ws.CodeForbidden, "action": "publish", "channel": channel})
			pe := lastError[*ws.ProtocolError](t, &log)
			require.Equal(t, channel, pe.Channel)
			require.Equal(t, ws.CodeForbidden, pe.Code)
			other.expectQuiet()
		})
	}
}
