// Package ws is an embeddable WebSocket pub/sub server with the channel
// model Laravel Echo users know: public channels, private- channels that
// need authorization, presence- channels that track who is there, and
// client-to-client whispers.
//
// One process needs nothing else: NewHub with nil broker and storage uses
// in-memory backends. Several processes behind a load balancer share
// channels and presence through Redis (NewRedisBroker, NewRedisStorage),
// or through any MessageBroker and StorageClient.
//
//	hub := ws.NewHub(ctx, nil, nil, ws.Config{})
//	go hub.Run()
//	http.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
//		ws.ServeWS(hub, w, r, &ws.Options{})
//	})
//	hub.Publish(ctx, "news", map[string]string{"title": "hello"})
//
// The wire protocol (one JSON object per text frame) is described in
// docs/protocol.md.
package ws
