package loadgen

import (
	"context"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestInflatingConn reads compressed, uncompressed, repeated and
// fragmented messages and a ping through inflatingConn from a gorilla
// server that compresses, and wants each message's text as sent, each
// distinct payload inflated once, and the wire bytes counted underneath.
func TestInflatingConn(t *testing.T) {
	chat := strings.Repeat(`{"type":"message","channel":"C","message":{"text":"hello @bob, see you at 10"}}`, 4)
	// Letters drawn at random compress to several frames of 256 B.
	rng := rand.New(rand.NewPCG(1, 2))
	letters := make([]byte, 3000)
	for i := range letters {
		letters[i] = 'a' + byte(rng.IntN(26))
	}
	big := string(letters)
	type msg struct {
		text     string
		compress bool
	}
	sent := []msg{{chat, true}, {chat, true}, {"short, sent plain", false}, {big, true}, {chat + "!", true}}
	up := websocket.Upgrader{EnableCompression: true, WriteBufferSize: 256}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		if err := c.WriteControl(websocket.PingMessage, []byte("p"), time.Now().Add(time.Second)); err != nil {
			t.Error(err)
		}
		for _, m := range sent {
			c.EnableWriteCompression(m.compress)
			if err := c.WriteMessage(websocket.TextMessage, []byte(m.text)); err != nil {
				t.Error(err)
				return
			}
		}
		c.ReadMessage() // until the client closes
	}))
	defer srv.Close()

	clear(inflated.m)
	c, resp, err := dialer(nil, 2048, 0, true, true).DialContext(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !negotiatedDeflate(resp) {
		t.Fatalf("permessage-deflate not negotiated: %v", resp.Header)
	}
	pings := 0
	c.SetPingHandler(func(string) error { pings++; return nil })
	for i, m := range sent {
		_, got, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if string(got) != m.text {
			t.Fatalf("message %d: got %d bytes %.60q..., want %d bytes %.60q...", i, len(got), got, len(m.text), m.text)
		}
	}
	if pings != 1 {
		t.Errorf("got %d pings, want 1", pings)
	}
	inflated.RLock()
	n := len(inflated.m)
	inflated.RUnlock()
	if n != 3 { // chat (twice), big, chat+"!"
		t.Errorf("inflated %d distinct payloads, want 3", n)
	}
	if w := wireCounter(c).Load(); w == 0 || w >= int64(2*len(chat)+len(big)) {
		t.Errorf("wire bytes %d: want some, fewer than the texts' %d", w, 2*len(chat)+len(big))
	}
}
