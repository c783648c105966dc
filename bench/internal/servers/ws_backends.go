package servers

import (
	ws "github.com/vortechron/go-ws"
)

// wsBackends returns the broker and storage for the ws server: nil (the
// in-memory defaults) without Redis, else a RedisBroker and RedisStorage
// on opts.Redis under opts.RedisPrefix (default "wsbench:"), so every node
// of one harness run forms one cluster.
func wsBackends(opts Options) (ws.MessageBroker, ws.StorageClient, error) {
	if opts.Redis == "" {
		return nil, nil, nil
	}
	prefix := opts.RedisPrefix
	if prefix == "" {
		prefix = "wsbench:"
	}
	o := ws.RedisOptions{Addrs: []string{opts.Redis}, KeyPrefix: prefix}
	b, err := ws.NewRedisBrokerWithOptions(o)
	if err != nil {
		return nil, nil, err
	}
	s, err := ws.NewRedisStorageWithOptions(o)
	if err != nil {
		b.Close()
		return nil, nil, err
	}
	return b, s, nil
}
