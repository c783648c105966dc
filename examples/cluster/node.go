package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	ws "github.com/vortechron/go-ws"
)

// node is one ws node: a hub and the HTTP server in front of it.
type node struct {
	name   string
	hub    *ws.Hub
	srv    *http.Server
	addr   string // host:port it listens on
	served chan error
}

// startNode runs a hub on broker and storage and serves it on addr:
// /ws for WebSocket clients and POST /publish?channel=C for the
// application.
func startNode(name, addr string, broker ws.MessageBroker, storage ws.StorageClient) (*node, error) {
	hub := ws.NewHub(context.Background(), broker, storage, ws.Config{})
	go hub.Run()
	options := &ws.Options{
		GetUserID:   func(r *http.Request) string { return r.URL.Query().Get("user") },
		AuthHandler: func(userID, channel string) bool { return userID != "" },
		GetUserInfo: func(r *http.Request, userID string) any { return map[string]string{"node": name} },
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ws", ws.Handler(hub, options))
	mux.HandleFunc("POST /publish", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err != nil || !json.Valid(body) {
			http.Error(w, "body must be JSON", http.StatusBadRequest)
			return
		}
		if err := hub.Publish(r.Context(), r.URL.Query().Get("channel"), json.RawMessage(body)); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hub.Shutdown(sctx)
		return nil, err
	}
	n := &node{name: name, hub: hub, addr: ln.Addr().String(), served: make(chan error, 1),
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	go func() { n.served <- n.srv.Serve(ln) }()
	return n, nil
}

// stop shuts the hub down (clients get 1001, presence is cleaned up) and
// then the HTTP server.
func (n *node) stop(ctx context.Context) error {
	err := n.hub.Shutdown(ctx)
	if serr := n.srv.Shutdown(ctx); err == nil {
		err = serr
	}
	if serr := <-n.served; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// wsURL is the node's WebSocket endpoint for user.
func (n *node) wsURL(user string) string { return "ws://" + n.addr + "/ws?user=" + user }

// demo shows the two nodes acting as one: bob, connected to node 2,
// receives what node 1 publishes, and alice (node 1) and bob see each
// other in one presence channel. It returns what bob received.
func demo(ctx context.Context, node1, node2 *node) ([]string, error) {
	alice, err := dial(ctx, node1.wsURL("alice"))
	if err != nil {
		return nil, err
	}
	defer alice.Close()
	bob, err := dial(ctx, node2.wsURL("bob"))
	if err != nil {
		return nil, err
	}
	defer bob.Close()

	var got []string
	// alice joins the lobby on node 1, then bob on node 2: bob's member
	// list comes from Redis and holds both.
	if err := subscribe(ctx, alice, "presence-lobby", `"event":"members"`); err != nil {
		return nil, err
	}
	if err := bob.WriteJSON(map[string]string{"action": "subscribe", "channel": "presence-lobby"}); err != nil {
		return nil, err
	}
	members, err := await(ctx, bob, `"event":"members"`)
	if err != nil {
		return nil, err
	}
	got = append(got, members)
	join, err := await(ctx, alice, `"event":"join"`) // alice hears bob join, across nodes
	if err != nil {
		return nil, err
	}
	got = append(got, join)

	if err := subscribe(ctx, bob, "news", `"type":"subscribed"`); err != nil {
		return nil, err
	}
	if err := node1.hub.Publish(ctx, "news", map[string]string{"text": "hello from node 1"}); err != nil {
		return nil, err
	}
	msg, err := await(ctx, bob, `"type":"message"`)
	if err != nil {
		return nil, err
	}
	return append(got, msg), nil
}

func dial(ctx context.Context, url string) (*websocket.Conn, error) {
	conn, resp, err := websocket.DefaultDialer.DialContext(ctx, url, nil)
	if resp != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	return conn, nil
}

func subscribe(ctx context.Context, c *websocket.Conn, channel, until string) error {
	if err := c.WriteJSON(map[string]string{"action": "subscribe", "channel": channel}); err != nil {
		return err
	}
	_, err := await(ctx, c, until)
	return err
}

// await reads frames until one contains want, and returns it.
func await(ctx context.Context, c *websocket.Conn, want string) (string, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(10 * time.Second)
	}
	_ = c.SetReadDeadline(deadline)
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			return "", fmt.Errorf("waiting for a frame with %s: %w", want, err)
		}
		if s := string(b); strings.Contains(s, want) {
			if strings.Contains(s, `"type":"error"`) {
				return "", errors.New(s)
			}
			return s, nil
		}
	}
}
