package adaptor_test

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/adaptor"
	"github.com/vortechron/go-ws/pusher"
)

// TestFiberPusher serves a Pusher server from Fiber: a Pusher client
// connects, is authorized for a private channel by the authorization
// endpoint, gets an event published through the signed HTTP API, and an
// unknown key is refused with 4001.
func TestFiberPusher(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	hub := ws.NewHub(ctx, nil, nil, ws.Config{})
	go hub.Run()
	app := pusher.App{ID: "1", Key: "k", Secret: "s"}
	srv := pusher.New(hub, app, &pusher.Options{Options: ws.Options{
		GetUserID:   func(r *http.Request) string { return r.Header.Get("X-User") },
		AuthHandler: func(string, string) bool { return true },
	}})
	require.NoError(t, srv.Err())
	f := fiber.New(fiber.Config{DisableStartupMessage: true})
	f.Server().MaxIdleWorkerDuration = 50 * time.Millisecond
	f.Post("/broadcasting/auth", adaptor.FiberHTTP(srv.AuthHandler()))
	f.Use(adaptor.FiberPusher(srv))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- f.Listener(ln) }()
	t.Cleanup(func() {
		cancel()
		<-hub.Done()
		require.NoError(t, f.ShutdownWithTimeout(5*time.Second))
		ln.Close()
		<-served
	})
	base := "http://" + ln.Addr().String()

	conn, resp, err := websocket.DefaultDialer.Dial("ws://"+ln.Addr().String()+"/app/k?protocol=7", nil)
	require.NoError(t, err)
	resp.Body.Close()
	defer conn.Close()
	read := func() map[string]any {
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
		var m map[string]any
		require.NoError(t, conn.ReadJSON(&m))
		return m
	}
	hello := read()
	require.Equal(t, "pusher:connection_established", hello["event"])
	var d struct {
		SocketID string `json:"socket_id"`
	}
	require.NoError(t, json.Unmarshal([]byte(hello["data"].(string)), &d))

	req, _ := http.NewRequest("POST", base+"/broadcasting/auth", strings.NewReader("socket_id="+d.SocketID+"&channel_name=private-a"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-User", "u")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	var auth map[string]string
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&auth))
	resp.Body.Close()
	require.NoError(t, conn.WriteJSON(map[string]any{"event": "pusher:subscribe", "data": map[string]any{"channel": "private-a", "auth": auth["auth"]}}))
	require.Equal(t, "pusher_internal:subscription_succeeded", read()["event"])

	body := `{"name":"E","channel":"private-a","data":"{\"x\":1}"}`
	sum := md5.Sum([]byte(body))
	q := url.Values{"auth_key": {"k"}, "auth_timestamp": {strconv.FormatInt(time.Now().Unix(), 10)}, "auth_version": {"1.0"}, "body_md5": {hex.EncodeToString(sum[:])}}
	m := hmac.New(sha256.New, []byte("s"))
	io.WriteString(m, "POST\n/apps/1/events\n"+"auth_key=k&auth_timestamp="+q.Get("auth_timestamp")+"&auth_version=1.0&body_md5="+q.Get("body_md5"))
	q.Set("auth_signature", hex.EncodeToString(m.Sum(nil)))
	resp, err = http.Post(base+"/apps/1/events?"+q.Encode(), "application/json", strings.NewReader(body))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode, string(b))
	ev := read()
	require.Equal(t, map[string]any{"event": "E", "channel": "private-a", "data": `{"x":1}`}, ev)

	bad, resp, err := websocket.DefaultDialer.Dial("ws://"+ln.Addr().String()+"/app/nope?protocol=7", nil)
	require.NoError(t, err)
	resp.Body.Close()
	defer bad.Close()
	var refusal map[string]any
	require.NoError(t, bad.ReadJSON(&refusal))
	require.Equal(t, "pusher:error", refusal["event"])
	_, _, err = bad.ReadMessage()
	var ce *websocket.CloseError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, pusher.CodeAppNotFound, ce.Code)
}
