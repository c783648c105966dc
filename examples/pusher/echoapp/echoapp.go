// Package echoapp is the Pusher example's server: a page that uses
// Laravel Echo and pusher-js from npm against ws's Pusher protocol, with a
// public channel, private inboxes, a presence lobby and typing whispers;
// for examples/pusher's main and the browser test in e2e/.
package echoapp

import (
	"context"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	_ "embed"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/pusher"
)

// App is the example's Pusher app. A Laravel app would have the same
// three values in its .env (PUSHER_APP_ID, PUSHER_APP_KEY,
// PUSHER_APP_SECRET, or the REVERB_ ones).
var App = pusher.App{ID: "example", Key: "example-key", Secret: "example-secret"}

// The example's channels, as the page's Echo names them (Echo adds the
// private- and presence- prefixes itself).
const (
	newsChannel = "news"           // echo.channel('news')
	lobby       = "presence-lobby" // echo.join('lobby')
	inboxPrefix = "private-inbox." // echo.private('inbox.' + name)
	maxText     = 300              // characters of a message
)

//go:embed index.html
var indexHTML string

var page = template.Must(template.New("index").Parse(indexHTML))

// validName is what a user name may be: it becomes part of channel names.
var validName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,24}$`)

// userID is the demo identity: the X-User header the page sends with its
// requests (Echo's auth.headers). A real application reads its session
// cookie or a token instead.
func userID(r *http.Request) string {
	if name := r.Header.Get("X-User"); validName.MatchString(name) {
		return name
	}
	return ""
}

// NewHandler serves the example on hub: the page at /, Laravel Echo and
// pusher-js from dir's node_modules at /vendor/, the Pusher endpoint
// (/app/{key}, /apps/{id}/...), the authorization endpoints Echo uses, and
// the page's actions (POST /say, /announce, /poke).
func NewHandler(hub *ws.Hub, dir string, logger *log.Logger) http.Handler {
	srv := pusher.New(hub, App, &pusher.Options{Options: ws.Options{
		GetUserID:   userID,
		GetUserInfo: func(_ *http.Request, id string) any { return map[string]string{"name": id} },
		// The lobby is open to every user; an inbox to its owner only.
		AuthHandler: func(id, channel string) bool {
			return channel == lobby || channel == inboxPrefix+id
		},
		EnableWhispers: true, // Pusher's "client events", Echo's whisper()
		ErrorHandler:   func(err error) { logger.Print(err) },
	}})
	if err := srv.Err(); err != nil {
		logger.Fatal(err)
	}
	a := &app{hub: hub, logger: logger}
	mux := http.NewServeMux()
	mux.Handle("/app/", srv)
	mux.Handle("/apps/", srv)
	mux.Handle("/broadcasting/auth", srv.AuthHandler())
	mux.Handle("/broadcasting/user-auth", srv.UserAuthHandler())
	mux.HandleFunc("/vendor/pusher.js", vendor(filepath.Join(dir, "node_modules", "pusher-js", "dist", "web", "pusher.min.js")))
	mux.HandleFunc("/vendor/echo.js", vendor(filepath.Join(dir, "node_modules", "laravel-echo", "dist", "echo.iife.js")))
	mux.HandleFunc("POST /say", a.say)
	mux.HandleFunc("POST /announce", a.announce)
	mux.HandleFunc("POST /poke", a.poke)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = page.Execute(w, map[string]string{"Key": App.Key})
	})
	return mux
}

// vendor serves one file of an npm package.
func vendor(path string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, err := os.Stat(path); err != nil {
			http.Error(w, "missing "+path+": run npm ci in examples/pusher", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		http.ServeFile(w, r, path)
	}
}

// InstallPackages runs npm ci in dir when its node_modules lacks Laravel
// Echo or pusher-js, saying so through logger.
func InstallPackages(ctx context.Context, dir string, logger *log.Logger) error {
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "laravel-echo", "dist", "echo.iife.js")); err == nil {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "pusher-js", "dist", "web", "pusher.min.js")); err == nil {
			return nil
		}
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return errors.New("npm is not on PATH: install Node.js, or copy laravel-echo and pusher-js into " + filepath.Join(dir, "node_modules"))
	}
	logger.Printf("installing laravel-echo and pusher-js: npm ci in %s", dir)
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return errors.New("npm ci in " + dir + ": " + err.Error() + "\n" + string(out))
	}
	return nil
}

type app struct {
	hub    *ws.Hub
	logger *log.Logger
}

// say publishes a message to the lobby, to everyone but the sender's own
// connection (X-Socket-Id, Echo's socketId(): Laravel's toOthers()).
func (a *app) say(w http.ResponseWriter, r *http.Request) {
	from, text, ok := a.read(w, r)
	if !ok {
		return
	}
	msg := map[string]string{"from": from, "text": text}
	a.publish(w, r, lobby, msg, ws.PublishOptions{Event: "MessagePosted", Except: r.Header.Get("X-Socket-Id")})
}

// announce publishes on the public news channel.
func (a *app) announce(w http.ResponseWriter, r *http.Request) {
	from, text, ok := a.read(w, r)
	if !ok {
		return
	}
	a.publish(w, r, newsChannel, map[string]string{"from": from, "text": text}, ws.PublishOptions{Event: "Announcement"})
}

// poke publishes on one user's private inbox.
func (a *app) poke(w http.ResponseWriter, r *http.Request) {
	from := userID(r)
	to := r.URL.Query().Get("to")
	if from == "" || !validName.MatchString(to) {
		http.Error(w, "need X-User and ?to=NAME", http.StatusBadRequest)
		return
	}
	a.publish(w, r, inboxPrefix+to, map[string]string{"from": from}, ws.PublishOptions{Event: "Poked"})
}

// read reads the sender and a text body of at most maxText characters.
func (a *app) read(w http.ResponseWriter, r *http.Request) (from, text string, ok bool) {
	from = userID(r)
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4*maxText))
	text = strings.TrimSpace(string(b))
	switch {
	case from == "":
		http.Error(w, "need X-User", http.StatusBadRequest)
	case err != nil || text == "" || !utf8.ValidString(text) || utf8.RuneCountInString(text) > maxText:
		http.Error(w, "text must be 1 to 300 characters", http.StatusBadRequest)
	default:
		return from, text, true
	}
	return "", "", false
}

func (a *app) publish(w http.ResponseWriter, r *http.Request, channel string, msg any, opts ws.PublishOptions) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := a.hub.PublishWith(ctx, channel, msg, opts); err != nil {
		a.logger.Print(err)
		http.Error(w, "publish failed", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(msg)
}
