package pusher

import "golang.org/x/time/rate"

// DefaultClientEventsPerSecond is Pusher's limit on the client events one
// connection may send.
const DefaultClientEventsPerSecond = 10

// clientEventLimit is the per-connection limit on client events: a token
// bucket refilled at perSecond with a burst of perSecond. Zero perSecond
// means no limit.
type clientEventLimit struct{ perSecond int }

// connState is what the protocol keeps for one connection: only for
// connections that sent a client event, and forgotten when they close.
type connState struct{ events *rate.Limiter }

// allowClientEvent applies the client event limit to one event of the
// connection socketID. Decode calls it on the connection's read goroutine.
func (p *protocol) allowClientEvent(socketID string) bool {
	n := p.clientEvents.perSecond
	if n <= 0 {
		return true
	}
	v, ok := p.conns.Load(socketID)
	if !ok {
		v, _ = p.conns.LoadOrStore(socketID, &connState{events: rate.NewLimiter(rate.Limit(n), n)})
	}
	return v.(*connState).events.Allow()
}

// forget drops what the protocol kept for a connection that closed.
func (p *protocol) forget(socketID string) { p.conns.Delete(socketID) }
