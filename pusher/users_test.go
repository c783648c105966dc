package pusher_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/pusher"
)

// TestHubUserAPIReachesSignedInClients: a Pusher client that signed in is
// its user's for the hub's user API: Hub.PublishToUser reaches it on
// #server-to-user-{id}, and Hub.DisconnectUser closes it with 4009, which
// pusher-js does not reconnect after.
func TestHubUserAPIReachesSignedInClients(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, nil, nil)
	c := n.dial(t, nil)
	userData := `{"id":"u1","user_info":{"name":"U"}}`
	c.signin(userData)
	c.expect("pusher:signin_success", "")

	ctx := context.Background()
	require.NoError(t, n.hub.PublishToUser(ctx, "u1", map[string]int{"n": 1}, ws.PublishOptions{Event: "note"}))
	f := c.expect("note", "#server-to-user-u1")
	require.Equal(t, map[string]any{"n": 1.0}, f["data"])

	require.NoError(t, n.hub.DisconnectUser(ctx, "u1"))
	require.Equal(t, pusher.CodeUnauthorized, c.expectClose())
}
