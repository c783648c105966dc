package servers

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/centrifugal/centrifuge"
)

// centrifugeServer is centrifugal/centrifuge with its own WebSocket handler
// and JSON protocol (v2): the load generator sends connect and subscribe
// commands and reads push frames, which centrifuge may pack several to a
// frame, newline-separated. Every subscription is allowed. The user is the
// "user" query parameter (none: anonymous), set as the connection's
// credentials by an HTTP middleware, as centrifuge's examples do. On
// channels named presence-* a subscription emits presence and join/leave
// events and receives join/leave pushes; clients read the member list with
// the presence command. Publications go through Node.Publish, which
// encodes once per protocol and fans out.
//
// Without Options.Redis it uses the in-memory broker and presence manager;
// with it, centrifuge's RedisBroker and RedisPresenceManager on one
// RedisShard, under Options.RedisPrefix. Options.Compress turns on its
// permessage-deflate (per connection and frame, at CompressLevel).
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
			return centrifuge.ConnectReply{}, nil // credentials come from the request context
		})
		node.OnConnect(func(c *centrifuge.Client) {
			c.OnSubscribe(func(e centrifuge.SubscribeEvent, cb centrifuge.SubscribeCallback) {
				var so centrifuge.SubscribeOptions
				if strings.HasPrefix(e.Channel, "presence-") {
					so = centrifuge.SubscribeOptions{EmitPresence: true, EmitJoinLeave: true, PushJoinLeave: true}
				}
				cb(centrifuge.SubscribeReply{Options: so}, nil)
			})
			c.OnPresence(func(e centrifuge.PresenceEvent, cb centrifuge.PresenceCallback) {
				cb(centrifuge.PresenceReply{}, nil)
			})
		})
		if opts.Redis != "" {
			if err := centrifugeRedis(node, opts); err != nil {
				return nil, err
			}
		}
		if err := node.Run(); err != nil {
			return nil, err
		}
		wc := centrifuge.WebsocketConfig{}
		if opts.Compress {
			// Level 0 would be flate.NoCompression, so the level is
			// always set.
			wc.Compression = true
			wc.CompressionLevel = opts.CompressLevel
		}
		h := centrifuge.NewWebsocketHandler(node, wc)
		return &centrifugeServer{node: node, handler: h}, nil
	})
}

func centrifugeRedis(node *centrifuge.Node, opts Options) error {
	prefix := opts.RedisPrefix
	if prefix == "" {
		prefix = "cfbench"
	}
	shard, err := centrifuge.NewRedisShard(node, centrifuge.RedisShardConfig{Address: opts.Redis})
	if err != nil {
		return err
	}
	shards := []*centrifuge.RedisShard{shard}
	broker, err := centrifuge.NewRedisBroker(node, centrifuge.RedisBrokerConfig{Prefix: prefix, Shards: shards})
	if err != nil {
		return err
	}
	node.SetBroker(broker)
	pm, err := centrifuge.NewRedisPresenceManager(node, centrifuge.RedisPresenceManagerConfig{Prefix: prefix, Shards: shards})
	if err != nil {
		return err
	}
	node.SetPresenceManager(pm)
	return nil
}

func (s *centrifugeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cred := &centrifuge.Credentials{UserID: r.URL.Query().Get("user")}
	s.handler.ServeHTTP(w, r.WithContext(centrifuge.SetCredentials(r.Context(), cred)))
}

func (s *centrifugeServer) Publish(ctx context.Context, channel string, payload []byte) error {
	_, err := s.node.Publish(channel, payload)
	return err
}

// CheckPresence compares the users and clients PresenceStats counts of
// every channel with want: a settled channel has one connection per user.
func (s *centrifugeServer) CheckPresence(ctx context.Context, channels []string, want []int) (int, string, error) {
	bad, first := 0, ""
	for i, ch := range channels {
		st, err := s.node.PresenceStats(ch)
		if err != nil {
			return bad, first, fmt.Errorf("PresenceStats(%s): %w", ch, err)
		}
		if st.NumUsers != want[i] || st.NumClients != want[i] {
			if bad == 0 {
				first = fmt.Sprintf("%s: %d users over %d clients, want %d", ch, st.NumUsers, st.NumClients, want[i])
			}
			bad++
		}
	}
	return bad, first, nil
}

func (s *centrifugeServer) Close() { s.node.Shutdown(context.Background()) }
