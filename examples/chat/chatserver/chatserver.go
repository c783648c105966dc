// Package chatserver is the chat example's server: the page, the
// JavaScript client it runs on, the WebSocket endpoint, POST /say and GET
// /history, for examples/chat's main and for the browser test in e2e/.
package chatserver

import (
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	_ "embed"

	ws "github.com/vortechron/go-ws"
	jsclient "github.com/vortechron/go-ws/clients/js"
)

// The chat's channels. Everyone subscribes to the public room and to the
// presence channel (who is online, and typing whispers); each user also
// has a private inbox for direct messages that only they may join.
const (
	roomChannel     = "room"
	presenceChannel = "presence-room"
	inboxPrefix     = "private-inbox."
)

// maxText is the longest message, in characters.
const maxText = 500

// The room keeps its latest roomHistory messages for a day; a page shows
// the last pageHistory of them when it opens.
const (
	roomHistory = 500
	pageHistory = 50
)

// History is the chat's Config.History: the room keeps history, so a page
// that opens (or reloads) shows the conversation and a page that lost its
// connection gets what it missed when it is back.
func History(channel string) ws.HistoryOptions {
	if channel == roomChannel {
		return ws.HistoryOptions{Size: roomHistory, TTL: 24 * time.Hour}
	}
	return ws.HistoryOptions{}
}

//go:embed index.html
var indexHTML []byte

// validName is what a user name may be. Names become part of a channel
// name, so they keep to characters channel names allow.
var validName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,24}$`)

// userID is the demo identity: ?name=NAME on the page and the WebSocket
// URL. A real application reads its session cookie or a token instead.
func userID(r *http.Request) string {
	if name := r.URL.Query().Get("name"); validName.MatchString(name) {
		return name
	}
	return ""
}

// options are the chat's WebSocket options.
func options(logger *log.Logger) *ws.Options {
	return &ws.Options{
		GetUserID: userID,
		GetUserInfo: func(r *http.Request, id string) any {
			return map[string]string{"name": id, "color": color(id)}
		},
		// The presence room is open to every identified user; an inbox
		// only to its owner.
		AuthHandler: func(id, channel string) bool {
			return channel == presenceChannel || channel == inboxPrefix+id
		},
		EnableWhispers:     true,
		WhisperPrivateOnly: true,
		// Only typing indicators travel as whispers; chat messages go
		// through POST /say so the server sees and could store them.
		WhisperMiddleware: func(w *ws.WhisperEvent) bool { return w.Event == "typing" },
		ErrorHandler:      func(err error) { logger.Print(err) }, // errors say "ws: ..." themselves
		OnConnect:         func(c *ws.Client) { logger.Printf("connected %s user=%q", c.ID, c.UserID) },
		OnDisconnect:      func(c *ws.Client) { logger.Printf("disconnected %s user=%q: %v", c.ID, c.UserID, c.DisconnectReason()) },
	}
}

// color picks a stable color for a user's name.
func color(id string) string {
	var h uint32 = 2166136261
	for i := 0; i < len(id); i++ {
		h = (h ^ uint32(id[i])) * 16777619
	}
	palette := []string{"#d1495b", "#00798c", "#edae49", "#66a182", "#2e4057", "#8d6a9f", "#c06c84", "#3f88c5"}
	return palette[h%uint32(len(palette))]
}

// chatMessage is what POST /say publishes.
type chatMessage struct {
	From string `json:"from"`
	To   string `json:"to,omitempty"` // set for direct messages
	Text string `json:"text"`
	At   int64  `json:"at"` // Unix milliseconds
}

// NewHandler serves the page at /, the JavaScript client at /js/, the
// WebSocket endpoint at /ws, POST /say and GET /history on hub, logging
// connections and errors to logger. hub's Config.History should be
// History.
func NewHandler(hub *ws.Hub, logger *log.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(indexHTML)
	})
	mux.Handle("GET /js/", http.StripPrefix("/js/", jsclient.Handler()))
	mux.Handle("GET /ws", ws.Handler(hub, options(logger)))
	mux.HandleFunc("GET /history", func(w http.ResponseWriter, r *http.Request) {
		if userID(r) == "" {
			http.Error(w, "sign in first: ?name=NAME", http.StatusUnauthorized)
			return
		}
		page, err := recentMessages(r, hub)
		if err != nil {
			http.Error(w, "history unavailable", http.StatusServiceUnavailable)
			logger.Print(err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(page)
	})
	mux.HandleFunc("POST /say", func(w http.ResponseWriter, r *http.Request) {
		from := userID(r)
		if from == "" {
			http.Error(w, "sign in first: ?name=NAME", http.StatusUnauthorized)
			return
		}
		var in struct{ Text, To string }
		if err := json.NewDecoder(io.LimitReader(r.Body, 16<<10)).Decode(&in); err != nil {
			http.Error(w, "body must be JSON like {\"text\":\"hi\"}", http.StatusBadRequest)
			return
		}
		in.Text = strings.TrimSpace(in.Text)
		if in.Text == "" || utf8.RuneCountInString(in.Text) > maxText {
			http.Error(w, "text must be 1 to 500 characters", http.StatusBadRequest)
			return
		}
		msg := chatMessage{From: from, Text: in.Text, At: time.Now().UnixMilli()}
		channels := []string{roomChannel}
		if in.To != "" {
			if !validName.MatchString(in.To) {
				http.Error(w, "no such user", http.StatusBadRequest)
				return
			}
			msg.To = in.To
			channels = []string{inboxPrefix + in.To}
			if in.To != from {
				channels = append(channels, inboxPrefix+from) // the sender's copy
			}
		}
		for _, ch := range channels {
			if err := hub.Publish(r.Context(), ch, msg); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// historyPage is what GET /history answers: the room's latest messages,
// oldest first, and the room's position when they were read, from which
// the page subscribes (with "since") so that it gets every later message
// and none twice.
type historyPage struct {
	Position ws.HistoryPosition `json:"position"`
	Messages []historyMessage   `json:"messages"`
}

type historyMessage struct {
	Offset  uint64          `json:"offset"`
	Message json.RawMessage `json:"message"`
}

// recentMessages reads the room's last pageHistory messages.
func recentMessages(r *http.Request, hub *ws.Hub) (historyPage, error) {
	res, err := hub.History(r.Context(), roomChannel, ws.HistoryQuery{Limit: pageHistory, Reverse: true})
	if errors.Is(err, ws.ErrNoHistory) {
		return historyPage{Messages: []historyMessage{}}, nil // a hub without History
	}
	if err != nil {
		return historyPage{}, err
	}
	page := historyPage{Position: res.Latest, Messages: make([]historyMessage, 0, len(res.Publications))}
	for i := len(res.Publications) - 1; i >= 0; i-- { // newest first: turn them around
		p := res.Publications[i]
		page.Messages = append(page.Messages, historyMessage{Offset: p.Offset, Message: p.Message})
	}
	return page, nil
}
