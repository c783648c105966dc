package ws_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/protocoltest"
)

// TestProtocolNetHTTP runs the endpoint test table against ServeWS on a
// net/http server. adaptor/adaptor_test.go runs the same table against
// the Fiber adaptor.
func TestProtocolNetHTTP(t *testing.T) {
	protocoltest.Run(t, func(t *testing.T, cfg ws.Config, opts *ws.Options) (*ws.Hub, string) {
		ctx, cancel := context.WithCancel(context.Background())
		hub := ws.NewHub(ctx, nil, nil, cfg)
		go hub.Run()
		mux := http.NewServeMux()
		mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
			_ = ws.ServeWS(hub, w, r, opts)
		})
		srv := httptest.NewServer(mux)
		t.Cleanup(func() {
			cancel()
			select {
			case <-hub.Done():
			case <-time.After(20 * time.Second):
				t.Error("hub did not stop within 20s")
			}
			srv.Close()
		})
		return hub, "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	})
}
