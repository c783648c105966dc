package servers

import (
	"context"
	"net/http"

	"github.com/centrifugal/centrifuge"
)

// centrifugeServer is centrifugal/centrifuge with its in-memory broker and
// its own WebSocket handler and JSON protocol (v2): the load generator
// sends connect and subscribe commands and reads push frames, which
// centrifuge may pack several to a frame, newline-separated. Every client
// is accepted anonymously and every subscription allowed. Publications go
// through Node.Publish, which encodes once per protocol and fans out.
type centrifugeServer struct {
	node    *centrifuge.Node
	handler http.Handler
}

func init() {
	register("centrifuge", func(ctx context.Context, opts Options) (Server, error) {
		node, err := centrifuge.New(centrifuge.Config{LogLevel: centrifuge.LogLevelNone})
		if err != nil {
			return nil, err
		}
		node.OnConnecting(func(ctx context.Context, e centrifuge.ConnectEvent) (centrifuge.ConnectReply, error) {
			return centrifuge.ConnectReply{Credentials: &centrifuge.Credentials{UserID: ""}}, nil
		})
		node.OnConnect(func(c *centrifuge.Client) {
			c.OnSubscribe(func(e centrifuge.SubscribeEvent, cb centrifuge.SubscribeCallback) {
				cb(centrifuge.SubscribeReply{}, nil)
			})
		})
		if err := node.Run(); err != nil {
			return nil, err
		}
		h := centrifuge.NewWebsocketHandler(node, centrifuge.WebsocketConfig{})
		return &centrifugeServer{node: node, handler: h}, nil
	})
}

func (s *centrifugeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handler.ServeHTTP(w, r)
}

func (s *centrifugeServer) Publish(ctx context.Context, channel string, payload []byte) error {
	_, err := s.node.Publish(channel, payload)
	return err
}

func (s *centrifugeServer) Close() { s.node.Shutdown(context.Background()) }
