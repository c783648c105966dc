package pusher_test

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/pusher"
)

func TestServerErrors(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, nil, nil)
	for _, app := range []pusher.App{{Key: "k", Secret: "s"}, {ID: "1", Key: "a/b", Secret: "s"}, {ID: "1", Key: "k", Secret: "s", EncryptionMasterKey: []byte("short")}} {
		srv := pusher.New(n.hub, app, nil)
		require.Error(t, srv.Err(), "app %+v", app)
		rec := httptestRecorder()
		srv.ServeHTTP(rec, mustRequest(t, "GET", "http://h/app/k?protocol=7"))
		require.Equal(t, http.StatusInternalServerError, rec.Code)
	}
	// A hub has room for three Pusher apps beside its native protocol.
	for i := range 2 {
		require.NoError(t, pusher.New(n.hub, pusher.App{ID: "x", Key: "x", Secret: "x"}, nil).Err(), "app %d", i+2)
	}
	require.ErrorContains(t, pusher.New(n.hub, pusher.App{ID: "y", Key: "y", Secret: "y"}, nil).Err(), "too many wire protocols")
}

func TestRefusalIsReported(t *testing.T) {
	var mu sync.Mutex
	var errs []error
	opts := &pusher.Options{Options: ws.Options{ErrorHandler: func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }}}
	n := newNode(t, nil, nil, ws.Config{}, opts, nil)
	c := n.dialRaw(t, "/app/wrong?protocol=7", nil)
	c.expectError(4001)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, errs, 1)
	var ce *ws.ConnectionError
	require.True(t, errors.As(errs[0], &ce))
	require.Contains(t, ce.Reason, "pusher 4001: App key wrong not in this cluster")
}

func TestOnDisconnectStillCalled(t *testing.T) {
	gone := make(chan string, 1)
	opts := &pusher.Options{Options: ws.Options{OnDisconnect: func(c *ws.Client) { gone <- c.ID }}}
	n := newNode(t, nil, nil, ws.Config{}, opts, nil)
	c := n.dial(t, nil)
	c.conn.Close()
	select {
	case id := <-gone:
		require.Equal(t, c.socketID, id)
	case <-time.After(5 * time.Second):
		t.Fatal("OnDisconnect not called")
	}
}

func TestEncryptedChannelAuth(t *testing.T) {
	opts := userOptions()
	n := newNode(t, nil, nil, ws.Config{}, opts, nil)
	master := []byte(strings.Repeat("m", 32))
	app := testApp
	app.EncryptionMasterKey = master
	srv := pusher.New(n.hub, app, opts)
	require.NoError(t, srv.Err())
	req := mustRequest(t, "POST", "http://h/auth")
	req.Body = readCloser("socket_id=1.2&channel_name=private-encrypted-doc")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-User", "ann")
	rec := httptestRecorder()
	srv.AuthHandler().ServeHTTP(rec, req)
	require.Equal(t, 200, rec.Code, rec.Body.String())
	var out map[string]string
	require.NoError(t, jsonUnmarshal(rec.Body.Bytes(), &out))
	sum := sha256.Sum256(append([]byte("private-encrypted-doc"), master...))
	require.Equal(t, base64.StdEncoding.EncodeToString(sum[:]), out["shared_secret"])
	require.Equal(t, channelAuth(testApp, "1.2", "private-encrypted-doc", ""), out["auth"])
}

// TestPresenceAsSignedInUser: a presence token without channel_data is
// the connection's signed-in user, with the info of its user_data (as
// pusher-js allows after signin()).
func TestPresenceAsSignedInUser(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, nil, nil)
	c := n.dial(t, nil)
	userData := `{"id":"sam","user_info":{"name":"Sam"}}`
	c.signin(userData)
	c.expect("pusher:signin_success", "")
	c.send("pusher:subscribe", map[string]any{"channel": "presence-x", "auth": channelAuth(testApp, c.socketID, "presence-x", "")}, "")
	f := c.expect("pusher_internal:subscription_succeeded", "presence-x")
	require.Equal(t, map[string]any{"presence": map[string]any{"ids": []any{"sam"}, "hash": map[string]any{"sam": map[string]any{"name": "Sam"}}, "count": 1.0}}, f["data"])
}

func TestAPIBodyTooLarge(t *testing.T) {
	n := newNode(t, nil, nil, ws.Config{}, &pusher.Options{MaxEventBytes: 100}, nil)
	status, body := n.api(t, "POST", "/apps/app-1/events", nil, strings.Repeat(" ", 300<<10), time.Now(), testApp.Secret)
	require.Equal(t, http.StatusRequestEntityTooLarge, status, body)
}
