package protocoltest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/wstest"
)

// serverClose checks that a connection the server closes ends at once,
// even when the peer never answers the close frame: the server closes the
// socket itself rather than wait for the read deadline.
func serverClose(t *testing.T, newServer NewServer) {
	connected := make(chan *ws.Client, 1)
	gone := make(chan error, 1)
	_, u := newServer(t, ws.Config{}, &ws.Options{
		OnConnect:    func(c *ws.Client) { connected <- c },
		OnDisconnect: func(c *ws.Client) { gone <- c.DisconnectReason() },
	})
	c := wstest.Dial(t, u, nil)
	sc := <-connected
	sc.Close(4000, "bye") // the client is not reading, so it sends no close back
	select {
	case reason := <-gone:
		var cr *ws.CloseReason
		require.ErrorAs(t, reason, &cr)
		require.Equal(t, 4000, cr.Code, "CloseReason.Code")
	case <-time.After(readTimeout):
		t.Fatalf("OnDisconnect was not called within %s of Client.Close", readTimeout)
	}
	require.Equal(t, 4000, c.ExpectClose(), "close code the client got")
}

func shutdown(t *testing.T, newServer NewServer) {
	hub, u := newServer(t, ws.Config{}, nil)
	cs := []*wstest.Client{wstest.Dial(t, u, nil), wstest.Dial(t, u, nil)}
	for _, c := range cs {
		c.Subscribe("x")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*readTimeout)
	defer cancel()
	require.NoError(t, hub.Shutdown(ctx))
	for _, c := range cs {
		require.Equal(t, ws.CloseGoingAway, c.ExpectClose(), "close code on shutdown")
	}
	require.ErrorIs(t, hub.Publish(context.Background(), "x", 1), ws.ErrHubClosed)
	resp, _ := wstest.DialRefused(t, u, nil)
	require.Equal(t, 503, resp.StatusCode, "status after shutdown")
}
