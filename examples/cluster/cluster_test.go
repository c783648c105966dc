package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/redistest"
)

// TestTwoNodesShareChannelsAndPresence runs the example's demonstration
// against the test Redis, with keys of its own.
func TestTwoNodesShareChannelsAndPresence(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	redistest.CleanupKeys(t, addr, prefix)
	opts := ws.RedisOptions{Addrs: []string{addr}, KeyPrefix: prefix}
	newNode := func(name string) *node {
		broker, err := ws.NewRedisBrokerWithOptions(opts)
		require.NoError(t, err)
		storage, err := ws.NewRedisStorageWithOptions(opts)
		require.NoError(t, err)
		n, err := startNode(name, "127.0.0.1:0", broker, storage)
		require.NoError(t, err)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			require.NoError(t, n.stop(ctx))
		})
		return n
	}
	node1, node2 := newNode("node1"), newNode("node2")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	frames, err := demo(ctx, node1, node2)
	require.NoError(t, err)
	require.Len(t, frames, 3)
	require.Contains(t, frames[0], `{"id":"alice","info":{"node":"node1"}}`, "bob's member list (node 2) holds alice (node 1)")
	require.Contains(t, frames[0], `{"id":"bob","info":{"node":"node2"}}`, "bob's member list holds bob")
	require.Contains(t, frames[1], `"user":{"id":"bob","info":{"node":"node2"}}`, "alice (node 1) hears bob (node 2) join")
	require.JSONEq(t, `{"type":"message","channel":"news","message":{"text":"hello from node 1"}}`, frames[2],
		"what bob on node 2 got from node 1's Publish")
}
