package adaptor_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/adaptor"
	"github.com/vortechron/go-ws/internal/protocoltest"
)

// TestMain fails the run if any test leaves a goroutine behind. fasthttp
// refreshes its Date header from one goroutine per process, forever.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"))
}

// TestProtocolFiber runs the endpoint test table, the one ServeWS passes
// in protocol_nethttp_test.go, against FiberHandler.
func TestProtocolFiber(t *testing.T) {
	protocoltest.Run(t, fiberServer(fiber.Config{}))
}

// TestProtocolFiberWithoutKeepalive runs the table on a Fiber app that
// closes every connection after one request: fasthttp then skips hijack
// handlers whose response it writes, so FiberHandler must write the 101
// itself for upgrades to work at all.
func TestProtocolFiberWithoutKeepalive(t *testing.T) {
	protocoltest.Run(t, fiberServer(fiber.Config{DisableKeepalive: true}))
}

// fiberServer serves FiberHandler at /ws on a Fiber app listening on a
// loopback port.
func fiberServer(appCfg fiber.Config) protocoltest.NewServer {
	return func(t *testing.T, cfg ws.Config, opts *ws.Options) (*ws.Hub, string) {
		ctx, cancel := context.WithCancel(context.Background())
		hub := ws.NewHub(ctx, nil, nil, cfg)
		go hub.Run()

		ac := appCfg
		ac.DisableStartupMessage = true
		app := fiber.New(ac)
		// fasthttp's idle-worker cleaner notices Shutdown only after this
		// long; the default 10s would outlive the test.
		app.Server().MaxIdleWorkerDuration = 50 * time.Millisecond
		app.Use("/ws", adaptor.FiberHandler(hub, opts))
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		served := make(chan error, 1)
		go func() { served <- app.Listener(ln) }()

		t.Cleanup(func() {
			cancel()
			select {
			case <-hub.Done():
			case <-time.After(20 * time.Second):
				t.Error("hub did not stop within 20s")
			}
			require.NoError(t, app.ShutdownWithTimeout(5*time.Second))
			ln.Close() // in case Shutdown ran before Listener registered ln
			select {
			case <-served:
			case <-time.After(5 * time.Second):
				t.Error("Fiber app did not stop within 5s")
			}
		})
		return hub, "ws://" + ln.Addr().String() + "/ws"
	}
}
