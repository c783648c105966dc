// Package pusher serves the Pusher Channels protocol (version 7) on a
// ws.Hub, so that Laravel Echo, pusher-js and every Pusher server SDK
// (Laravel's pusher broadcaster, pusher-http-node, ...) work with a Go
// service unchanged:
//
//	hub := ws.NewHub(ctx, nil, nil, ws.Config{})
//	go hub.Run()
//	srv := pusher.New(hub, pusher.App{ID: "app", Key: "key", Secret: "secret"}, &pusher.Options{
//		Options: ws.Options{GetUserID: userFromSession, AuthHandler: mayJoin, EnableWhispers: true},
//	})
//	http.Handle("/", srv)                            // /app/{key} and /apps/{id}/...
//	http.Handle("/broadcasting/auth", srv.AuthHandler())
//
// Pusher clients and ws's native clients share the hub's channels,
// presence and whispers: a publication reaches both (Hub.PublishWith's
// Event is the Pusher event name), a native whisper "typing" is the
// Pusher client event "client-typing" and the other way round, and a
// presence channel has one member list. docs/pusher.md describes the
// mapping, the error and close codes, and the Laravel and pusher-js
// setups.
package pusher
