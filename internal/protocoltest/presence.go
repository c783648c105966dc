package protocoltest

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/wstest"
)

// roomOptions identify users by X-User, give them a display name, allow
// every private and presence channel and enable whispers.
func roomOptions() *ws.Options {
	return &ws.Options{
		GetUserID:      func(r *http.Request) string { return r.Header.Get("X-User") },
		GetUserInfo:    func(r *http.Request, userID string) any { return map[string]string{"name": strings.ToUpper(userID)} },
		AuthHandler:    func(userID, channel string) bool { return true },
		EnableWhispers: true,
	}
}

// members returns "id:name" for each user of a presence frame.
func members(tb testing.TB, frame map[string]any) []string {
	tb.Helper()
	users, ok := frame["users"].([]any)
	require.True(tb, ok, "presence frame %v has a users list", frame)
	var out []string
	for _, u := range users {
		m := u.(map[string]any)
		info, _ := m["info"].(map[string]any)
		out = append(out, m["id"].(string)+":"+info["name"].(string))
	}
	return out
}

func presence(t *testing.T, newServer NewServer) {
	_, u := newServer(t, ws.Config{}, roomOptions())
	alice := wstest.Dial(t, u, withUser("alice"))
	alice.Subscribe("presence-room")
	m := alice.Expect(map[string]any{"type": "presence", "channel": "presence-room", "event": "members", "count": float64(1)})
	require.Equal(t, []string{"alice:ALICE"}, members(t, m))

	bob := wstest.Dial(t, u, withUser("bob"))
	bob.Subscribe("presence-room")
	m = bob.Expect(map[string]any{"type": "presence", "event": "members", "count": float64(2)})
	require.Equal(t, []string{"alice:ALICE", "bob:BOB"}, members(t, m))
	m = alice.Expect(map[string]any{"type": "presence", "event": "join", "count": float64(2)})
	require.Equal(t, map[string]any{"id": "bob", "info": map[string]any{"name": "BOB"}}, m["user"], "joined user")
	require.Equal(t, []string{"alice:ALICE", "bob:BOB"}, members(t, m))

	require.NoError(t, bob.Conn.Close())
	m = alice.Expect(map[string]any{"type": "presence", "event": "leave", "count": float64(1)})
	require.Equal(t, map[string]any{"id": "bob", "info": map[string]any{"name": "BOB"}}, m["user"], "user who left")
	require.Equal(t, []string{"alice:ALICE"}, members(t, m))
}

func whisper(t *testing.T, newServer NewServer) {
	hub, u := newServer(t, ws.Config{}, roomOptions())
	alice, bob, carol := wstest.Dial(t, u, withUser("alice")), wstest.Dial(t, u, withUser("bob")), wstest.Dial(t, u, withUser("carol"))
	for _, c := range []*wstest.Client{alice, bob, carol} {
		c.Subscribe("private-room")
	}
	alice.Send(map[string]any{"action": "whisper", "channel": "private-room", "event": "typing", "data": map[string]any{"typing": true}})
	want := map[string]any{"type": "whisper", "from": "alice", "event": "typing", "channel": "private-room",
		"data": map[string]any{"typing": true}}
	bob.Expect(want)
	carol.Expect(want)
	alice.Quiet() // the sender does not hear its own whisper

	anon := wstest.Dial(t, u, nil)
	anon.Subscribe("lobby")
	anon.Send(map[string]any{"action": "whisper", "channel": "lobby", "event": "typing"})
	anon.Expect(map[string]any{"type": "error", "code": ws.CodeForbidden, "action": "whisper", "channel": "lobby"})

	s := hub.Stats()
	require.Equal(t, int64(1), s.WhispersIn, "Stats.WhispersIn")
	require.Equal(t, int64(2), s.WhispersOut, "Stats.WhispersOut")
}
