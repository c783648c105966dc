package servers

import (
	"errors"

	ws "github.com/vortechron/go-ws"
)

// wsBackends returns the broker and storage for the ws server: nil (the
// in-memory defaults) without Redis.
func wsBackends(opts Options) (ws.MessageBroker, ws.StorageClient, error) {
	if opts.Redis == "" {
		return nil, nil, nil
	}
	return nil, nil, errors.New("ws: the Redis broker is not on main yet")
}
