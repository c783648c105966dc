package ws_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/gorilla/websocket"

	ws "github.com/vortechron/go-ws"
)

// ExampleHub_Channels lists the occupied channels of the cluster (here one
// in-memory node) and counts a presence channel's members; the hooks
// report the channel's first subscriber and, at shutdown, its last.
func ExampleHub_Channels() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan string, 2) // hooks run on a goroutine of the hub's
	hub := ws.NewHub(ctx, nil, nil, ws.Config{
		OnChannelOccupied: func(ch string) { events <- "occupied " + ch },
		OnChannelVacated:  func(ch string) { events <- "vacated " + ch },
	})
	go hub.Run()
	srv := httptest.NewServer(ws.Handler(hub, &ws.Options{
		GetUserID:   func(r *http.Request) string { return r.URL.Query().Get("user") },
		AuthHandler: func(userID, channel string) bool { return true },
	}))
	defer srv.Close()

	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"?user=alice", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	_ = conn.WriteJSON(map[string]string{"action": "subscribe", "channel": "presence-lobby"})
	var frame map[string]any
	_ = conn.ReadJSON(&frame) // subscribed
	_ = conn.ReadJSON(&frame) // the member list, sent once alice is a member
	fmt.Println(<-events)

	channels, err := hub.Channels(ctx, "presence-")
	fmt.Printf("%+v %v\n", channels, err)

	cancel() // shut down: the last subscriber goes
	<-hub.Done()
	fmt.Println(<-events)
	// Output:
	// occupied presence-lobby
	// [{Name:presence-lobby Subscriptions:1 Users:1}] <nil>
	// vacated presence-lobby
}

// ExampleHub_PublishToUser sends to every connection of one user, on
// every node, and then disconnects them all.
func ExampleHub_PublishToUser() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hub := ws.NewHub(ctx, nil, nil, ws.Config{})
	go hub.Run()
	srv := httptest.NewServer(ws.Handler(hub, &ws.Options{
		GetUserID: func(r *http.Request) string { return r.URL.Query().Get("user") },
	}))
	defer srv.Close()
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"?user=alice", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	_ = conn.WriteJSON(map[string]string{"action": "ping"})
	_, _, _ = conn.ReadMessage() // pong: the connection is registered

	_ = hub.PublishToUser(ctx, "alice", map[string]string{"text": "hi"}, ws.PublishOptions{Event: "note"})
	_, frame, _ := conn.ReadMessage()
	fmt.Println(string(frame))

	_ = hub.DisconnectUser(ctx, "alice")
	_, _, err = conn.ReadMessage()
	fmt.Println(websocket.IsCloseError(err, ws.CloseTerminated))
	// Output:
	// {"type":"message","channel":"#user","event":"note","message":{"text":"hi"}}
	// true
}
