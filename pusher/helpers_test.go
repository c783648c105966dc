package pusher_test

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/pusher"
)

var testApp = pusher.App{ID: "app-1", Key: "key-1", Secret: "secret-1"}

// node is one hub with a Pusher server at / (its /app/{key} and
// /apps/{id}/...), the authorization endpoints at /pusher/auth and
// /pusher/user-auth, and ws's native endpoint at /ws.
type node struct {
	hub    *ws.Hub
	srv    *pusher.Server
	server *httptest.Server
	base   string // http://127.0.0.1:port
	cancel context.CancelFunc
}

// newNode starts a node with the given backends (nil: in-memory). The
// native endpoint uses native (nil: opts.Options). Everything stops in
// t.Cleanup.
func newNode(t testing.TB, broker ws.MessageBroker, storage ws.StorageClient, cfg ws.Config, opts *pusher.Options, native *ws.Options) *node {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return newNodeOn(t, ln, broker, storage, cfg, opts, native)
}

// newNodeOn is newNode serving on ln.
func newNodeOn(t testing.TB, ln net.Listener, broker ws.MessageBroker, storage ws.StorageClient, cfg ws.Config, opts *pusher.Options, native *ws.Options) *node {
	t.Helper()
	if opts == nil {
		opts = &pusher.Options{}
	}
	if native == nil {
		o := opts.Options
		native = &o
	}
	ctx, cancel := context.WithCancel(context.Background())
	hub := ws.NewHub(ctx, broker, storage, cfg)
	runErr := make(chan error, 1)
	go func() { runErr <- hub.Run() }()
	srv := pusher.New(hub, testApp, opts)
	require.NoError(t, srv.Err())
	mux := http.NewServeMux()
	mux.Handle("/", srv)
	mux.Handle("/pusher/auth", srv.AuthHandler())
	mux.Handle("/pusher/user-auth", srv.UserAuthHandler())
	mux.Handle("/ws", ws.Handler(hub, native))
	hs := httptest.NewUnstartedServer(mux)
	hs.Listener.Close()
	hs.Listener = ln
	hs.Start()
	n := &node{hub: hub, srv: srv, server: hs, cancel: cancel}
	n.base = n.server.URL
	t.Cleanup(func() {
		n.stop(t)
		require.NoError(t, <-runErr)
	})
	return n
}

// stop shuts the hub down and closes the server; it may be called twice.
func (n *node) stop(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_ = n.hub.Shutdown(ctx)
	n.cancel()
	n.server.Close()
}

// userOptions identify users by the X-User header (or ?user=), allow every
// private and presence channel without "secret" in its name, give each
// user the info {"name": upper-case ID} and enable client events.
func userOptions() *pusher.Options {
	return &pusher.Options{Options: ws.Options{
		GetUserID: func(r *http.Request) string {
			if u := r.Header.Get("X-User"); u != "" {
				return u
			}
			return r.URL.Query().Get("user")
		},
		GetUserInfo:    func(_ *http.Request, id string) any { return map[string]string{"name": strings.ToUpper(id)} },
		AuthHandler:    func(_, channel string) bool { return !strings.Contains(channel, "secret") },
		EnableWhispers: true,
	}}
}

// pclient is a Pusher client over a real WebSocket: frames are read one
// at a time, with "data" decoded as pusher-js decodes it (a string holding
// JSON becomes the value).
type pclient struct {
	t        testing.TB
	conn     *websocket.Conn
	socketID string
}

const readTimeout = 5 * time.Second

// dial connects a Pusher client to n and reads its connection_established.
func (n *node) dial(t testing.TB, header http.Header) *pclient {
	t.Helper()
	c := n.dialRaw(t, "/app/"+testApp.Key+"?protocol=7&client=js&version=8.4.0", header)
	f := c.next()
	require.Equal(t, "pusher:connection_established", f["event"], "first frame %v", f)
	data := f["data"].(map[string]any)
	c.socketID = data["socket_id"].(string)
	require.Regexp(t, `^\d+\.\d+$`, c.socketID)
	return c
}

// dialUser dials as user (the X-User header).
func (n *node) dialUser(t testing.TB, user string) *pclient {
	t.Helper()
	return n.dial(t, http.Header{"X-User": {user}})
}

func (n *node) dialRaw(t testing.TB, path string, header http.Header) *pclient {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(n.base, "http")+path, header)
	if resp != nil {
		resp.Body.Close()
	}
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return &pclient{t: t, conn: conn}
}

// next reads the next frame.
func (c *pclient) next() map[string]any {
	c.t.Helper()
	require.NoError(c.t, c.conn.SetReadDeadline(time.Now().Add(readTimeout)))
	typ, b, err := c.conn.ReadMessage()
	require.NoError(c.t, err, "reading a frame")
	require.Equal(c.t, websocket.TextMessage, typ)
	var f map[string]any
	require.NoError(c.t, json.Unmarshal(b, &f), "frame %s", b)
	if s, ok := f["data"].(string); ok {
		var v any
		if json.Unmarshal([]byte(s), &v) == nil {
			f["data"] = v
		}
	}
	return f
}

// nextRaw reads the next frame's bytes.
func (c *pclient) nextRaw() string {
	c.t.Helper()
	require.NoError(c.t, c.conn.SetReadDeadline(time.Now().Add(readTimeout)))
	_, b, err := c.conn.ReadMessage()
	require.NoError(c.t, err)
	return string(b)
}

// expect reads the next frame and checks its event and channel. A
// presence channel's repeated subscription_succeeded (the hub may resend
// the member list at any time; pusher-js resets its list on each) is
// skipped unless that is what is expected.
func (c *pclient) expect(event, channel string) map[string]any {
	c.t.Helper()
	f := c.next()
	for event != "pusher_internal:subscription_succeeded" && f["event"] == "pusher_internal:subscription_succeeded" &&
		strings.HasPrefix(f["channel"].(string), "presence-") {
		f = c.next()
	}
	require.Equal(c.t, event, f["event"], "frame %v", f)
	if channel != "" {
		require.Equal(c.t, channel, f["channel"], "frame %v", f)
	}
	return f
}

// expectError reads a pusher:error with code.
func (c *pclient) expectError(code int) map[string]any {
	c.t.Helper()
	f := c.expect("pusher:error", "")
	require.EqualValues(c.t, code, f["data"].(map[string]any)["code"], "frame %v", f)
	return f
}

// expectClose reads until the server's close frame and returns its code.
func (c *pclient) expectClose() int {
	c.t.Helper()
	require.NoError(c.t, c.conn.SetReadDeadline(time.Now().Add(2*readTimeout)))
	for {
		_, _, err := c.conn.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		require.ErrorAs(c.t, err, &ce, "want a close frame")
		return ce.Code
	}
}

// quiet checks that no frame arrives for a moment: the server sends
// nothing more for what was sent before. A ping answered proves the
// server has read everything before it.
func (c *pclient) quiet() {
	c.t.Helper()
	c.send("pusher:ping", map[string]any{}, "")
	f := c.next()
	require.Equal(c.t, "pusher:pong", f["event"], "want no frame before the pong, got %v", f)
}

func (c *pclient) send(event string, data any, channel string) {
	c.t.Helper()
	f := map[string]any{"event": event, "data": data}
	if channel != "" {
		f["channel"] = channel
	}
	require.NoError(c.t, c.conn.WriteJSON(f))
}

// signin sends pusher:signin for userData, signed for c's socket as a
// Pusher server SDK signs it (the answer is the caller's to read).
func (c *pclient) signin(userData string) {
	c.t.Helper()
	c.send("pusher:signin", map[string]any{"user_data": userData, "auth": testApp.Key + ":" + hmacHex(testApp.Secret, c.socketID+"::user::"+userData)}, "")
}

// awaitReady waits until every node's hub takes part in the cluster.
func awaitReady(t testing.TB, nodes ...*node) {
	t.Helper()
	for i, n := range nodes {
		select {
		case <-n.hub.Ready():
		case <-time.After(10 * time.Second):
			t.Fatalf("node %d was not Ready within 10s", i)
		}
	}
}

func (c *pclient) sendRaw(s string) {
	c.t.Helper()
	require.NoError(c.t, c.conn.WriteMessage(websocket.TextMessage, []byte(s)))
}

// subscribe subscribes to a public channel, or a private or presence one
// with a token signed here (presence: as user with info), and reads the
// success.
func (c *pclient) subscribe(channel string, user ...string) map[string]any {
	c.t.Helper()
	c.send("pusher:subscribe", subscribeData(c.socketID, channel, user...), "")
	return c.expect("pusher_internal:subscription_succeeded", channel)
}

// subscribeData is pusher:subscribe's data, signed as a Pusher server SDK
// signs it.
func subscribeData(socketID, channel string, user ...string) map[string]any {
	d := map[string]any{"channel": channel}
	if !strings.HasPrefix(channel, "private-") && !strings.HasPrefix(channel, "presence-") {
		return d
	}
	cd := ""
	if strings.HasPrefix(channel, "presence-") {
		b, _ := json.Marshal(map[string]any{"user_id": user[0], "user_info": map[string]any{"name": strings.ToUpper(user[0])}})
		cd = string(b)
		d["channel_data"] = cd
	}
	d["auth"] = channelAuth(testApp, socketID, channel, cd)
	return d
}

func hmacHex(secret, s string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(s))
	return hex.EncodeToString(m.Sum(nil))
}

func channelAuth(app pusher.App, socketID, channel, channelData string) string {
	s := socketID + ":" + channel
	if channelData != "" {
		s += ":" + channelData
	}
	return app.Key + ":" + hmacHex(app.Secret, s)
}

// api makes a signed HTTP API request as Pusher's server SDKs do, with
// extra query parameters, at time now.
func (n *node) api(t testing.TB, method, path string, params url.Values, body any, now time.Time, secret string) (int, string) {
	t.Helper()
	req := signedRequest(t, n.base, method, path, params, body, now, secret)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func signedRequest(t testing.TB, base, method, path string, params url.Values, body any, now time.Time, secret string) *http.Request {
	t.Helper()
	q := url.Values{}
	for k, v := range params {
		q[k] = v
	}
	q.Set("auth_key", testApp.Key)
	q.Set("auth_timestamp", strconv.FormatInt(now.Unix(), 10))
	q.Set("auth_version", "1.0")
	var raw []byte
	if body != nil {
		switch b := body.(type) {
		case string:
			raw = []byte(b)
		default:
			raw, _ = json.Marshal(b)
		}
		sum := md5.Sum(raw)
		q.Set("body_md5", hex.EncodeToString(sum[:]))
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + q.Get(k)
	}
	q.Set("auth_signature", hmacHex(secret, method+"\n"+path+"\n"+strings.Join(parts, "&")))
	var rd io.Reader
	if raw != nil {
		rd = strings.NewReader(string(raw))
	}
	req, err := http.NewRequest(method, base+path+"?"+q.Encode(), rd)
	require.NoError(t, err)
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

// trigger publishes an event through the HTTP API and checks it was
// accepted.
func (n *node) trigger(t testing.TB, body map[string]any) string {
	t.Helper()
	status, resp := n.api(t, "POST", "/apps/"+testApp.ID+"/events", nil, body, time.Now(), testApp.Secret)
	require.Equal(t, http.StatusOK, status, "response %s", resp)
	return resp
}

// native is a client of ws's own protocol on n's /ws endpoint.
type native struct {
	t    testing.TB
	conn *websocket.Conn
}

func (n *node) dialNative(t testing.TB, user string) *native {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(n.base, "http")+"/ws", http.Header{"X-User": {user}})
	if resp != nil {
		resp.Body.Close()
	}
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return &native{t: t, conn: conn}
}

func (c *native) send(v any) { c.t.Helper(); require.NoError(c.t, c.conn.WriteJSON(v)) }

func (c *native) next() map[string]any {
	c.t.Helper()
	require.NoError(c.t, c.conn.SetReadDeadline(time.Now().Add(readTimeout)))
	var f map[string]any
	require.NoError(c.t, c.conn.ReadJSON(&f))
	return f
}

func (c *native) expect(typ string) map[string]any {
	c.t.Helper()
	f := c.next()
	require.Equal(c.t, typ, f["type"], "frame %v", f)
	return f
}

var _ = fmt.Sprint

func readCloser(s string) io.ReadCloser { return io.NopCloser(strings.NewReader(s)) }

func mustRequest(t testing.TB, method, u string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	require.NoError(t, err)
	return req
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// wsConfig is the hub configuration of the acceptance tests.
func wsConfig() ws.Config { return ws.Config{} }

func httptestRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }
