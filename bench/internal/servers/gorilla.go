package servers

import (
	"context"
	"net/http"
	"time"

	"github.com/gorilla/websocket"

	"github.com/vortechron/go-ws/bench/internal/proto"
)

// The gorilla server is the hub of gorilla/websocket's chat example with
// channels added: one hub goroutine owns the subscriber sets and serves the
// register, unregister and broadcast channels; each client has a 256-frame
// send channel drained by its writePump, which (as in the example) packs
// whatever is queued into one frame separated by newlines. A client whose
// send channel is full is dropped. A client may join several channels.

const (
	gWriteWait  = 10 * time.Second
	gPongWait   = 60 * time.Second
	gPingPeriod = (gPongWait * 9) / 10
	gMaxMessage = 512
	gSendQueue  = 256
)

type gorillaMsg struct {
	channel string
	data    []byte
}

type gorillaSub struct {
	client  *gorillaClient
	channel string
}

type gorillaHub struct {
	channels   map[string]map[*gorillaClient]bool // owned by the run goroutine
	broadcast  chan gorillaMsg
	register   chan gorillaSub
	unregister chan *gorillaClient
	done       chan struct{}
	upgrader   websocket.Upgrader
}

type gorillaClient struct {
	hub      *gorillaHub
	conn     *websocket.Conn
	send     chan []byte
	channels []string // owned by the run goroutine
	gone     bool     // owned by the run goroutine: send is closed
}

func init() {
	register("gorilla", func(ctx context.Context, opts Options) (Server, error) {
		h := &gorillaHub{
			channels:   map[string]map[*gorillaClient]bool{},
			broadcast:  make(chan gorillaMsg),
			register:   make(chan gorillaSub),
			unregister: make(chan *gorillaClient),
			done:       make(chan struct{}),
			upgrader:   websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024},
		}
		go h.run()
		return h, nil
	})
}

func (h *gorillaHub) run() {
	for {
		select {
		case sub := <-h.register:
			c := sub.client
			if c.gone {
				continue
			}
			set := h.channels[sub.channel]
			if set == nil {
				set = map[*gorillaClient]bool{}
				h.channels[sub.channel] = set
			}
			if !set[c] {
				set[c] = true
				c.channels = append(c.channels, sub.channel)
			}
			select {
			case c.send <- proto.Subscribed(sub.channel):
			default:
			}
		case c := <-h.unregister:
			h.drop(c)
		case m := <-h.broadcast:
			for c := range h.channels[m.channel] {
				select {
				case c.send <- m.data:
				default:
					h.drop(c)
				}
			}
		case <-h.done:
			return
		}
	}
}

// drop removes c from all its channels and closes its send channel, once.
func (h *gorillaHub) drop(c *gorillaClient) {
	if c.gone {
		return
	}
	for _, ch := range c.channels {
		delete(h.channels[ch], c)
	}
	c.channels = nil
	c.gone = true
	close(c.send)
}

func (h *gorillaHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	conn, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &gorillaClient{hub: h, conn: conn, send: make(chan []byte, gSendQueue)}
	go c.writePump()
	go c.readPump()
}

func (c *gorillaClient) readPump() {
	defer func() {
		select {
		case c.hub.unregister <- c:
		case <-c.hub.done:
		}
		c.conn.Close()
	}()
	c.conn.SetReadLimit(gMaxMessage)
	c.conn.SetReadDeadline(time.Now().Add(gPongWait))
	c.conn.SetPongHandler(func(string) error { c.conn.SetReadDeadline(time.Now().Add(gPongWait)); return nil })
	for {
		_, msg, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		if ch, ok := proto.ChannelOf(msg); ok {
			select {
			case c.hub.register <- gorillaSub{client: c, channel: ch}:
			case <-c.hub.done:
				return
			}
		}
	}
}

var newline = []byte{'\n'}

func (c *gorillaClient) writePump() {
	ticker := time.NewTicker(gPingPeriod)
	defer func() {
		ticker.Stop()
		c.conn.Close()
	}()
	for {
		select {
		case message, ok := <-c.send:
			c.conn.SetWriteDeadline(time.Now().Add(gWriteWait))
			if !ok {
				c.conn.WriteMessage(websocket.CloseMessage, []byte{})
				return
			}
			w, err := c.conn.NextWriter(websocket.TextMessage)
			if err != nil {
				return
			}
			w.Write(message)
			n := len(c.send)
			for range n {
				w.Write(newline)
				w.Write(<-c.send)
			}
			if err := w.Close(); err != nil {
				return
			}
		case <-ticker.C:
			c.conn.SetWriteDeadline(time.Now().Add(gWriteWait))
			if err := c.conn.WriteMessage(websocket.PingMessage, nil); err != nil {
				return
			}
		}
	}
}

func (h *gorillaHub) Publish(ctx context.Context, channel string, payload []byte) error {
	select {
	case h.broadcast <- gorillaMsg{channel: channel, data: proto.Envelope(channel, payload)}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *gorillaHub) Close() { close(h.done) }
