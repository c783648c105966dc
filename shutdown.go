package ws

import (
	"context"
	"fmt"
	"time"
)

// Shutdown stops the hub gracefully and waits until Run has returned or
// ctx is done. New connections are refused (503), every client gets a
// going-away close frame (1001) so it reconnects elsewhere, this node's
// presence members are removed (others see leave), OnDisconnect runs for
// every connection, broker subscriptions are dropped and the broker and
// storage are closed.
//
// ctx's deadline bounds all of it. Shortly before the deadline the hub
// stops waiting politely: its broker and storage calls are cancelled and
// the sockets still open are closed without a close handshake; at the
// deadline Run returns whatever is left. Shutdown returns nil when every
// connection closed gracefully, an error wrapping
// context.DeadlineExceeded when some had to be closed hard or were still
// tearing down at the deadline, or ctx.Err() if ctx ends before Run has
// returned. Cancelling the ctx given to NewHub
// has the same effect, with a deadline of WriteTimeout plus 5s unless
// Shutdown sets one.
//
// http.Server.Shutdown does not wait for hijacked (WebSocket) connections;
// wire the two together with
//
//	server.RegisterOnShutdown(func() { hub.Shutdown(ctx) })
func (h *Hub) Shutdown(ctx context.Context) error {
	if dl, ok := ctx.Deadline(); ok {
		h.shutdownMu.Lock()
		if h.shutdownDeadline.IsZero() || dl.Before(h.shutdownDeadline) {
			h.shutdownDeadline = dl
			select {
			case h.deadlineMoved <- struct{}{}:
			default:
			}
		}
		h.shutdownMu.Unlock()
	}
	h.closing.Store(true)
	h.cancel()
	if !h.started.Load() {
		h.finish()
		h.exit()
		return nil
	}
	select {
	case <-h.exited:
		forced, unended := h.forced.Load(), h.unended.Load()
		if forced > 0 || unended > 0 {
			return fmt.Errorf("ws: shutdown: %d connections closed hard, %d still tearing down at the deadline: %w",
				forced, unended, context.DeadlineExceeded)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// hardGrace is the most time drain keeps, at the end of the shutdown
// deadline, for closing hard whatever did not close gracefully.
const hardGrace = time.Second

// shutdownTimes returns when drain must start closing hard and when it
// must stop waiting.
func (h *Hub) shutdownTimes() (hard, giveUp time.Time) {
	h.shutdownMu.Lock()
	giveUp = h.shutdownDeadline
	h.shutdownMu.Unlock()
	if giveUp.IsZero() {
		giveUp = time.Now().Add(h.cfg.WriteTimeout + brokerTimeout)
	}
	grace := min(hardGrace, time.Until(giveUp)/4)
	return giveUp.Add(-grace), giveUp
}

// drain shuts the hub down; called by the Run goroutine once its context
// is done. It closes every client with 1001 and keeps serving operations
// until each client has torn down (left its channels and presence sets,
// OnDisconnect returned) and every broker call has reported back.
//
// At the hard time it cancels the hub's own broker and storage calls and
// closes the sockets still open; at the deadline it stops waiting and
// unregisters whatever is left itself, so Run returns in time even when a
// client is stuck in user code (an AuthProvider, ErrorHandler or
// OnDisconnect) or a broker ignores its context. The presence of clients
// unregistered that way is not removed; a PresenceMaintainer on another
// node removes it once this node's heartbeat is gone.
func (h *Hub) drain(bg *background) {
	h.closing.Store(true)
	start := time.Now()
	hardAt, giveUpAt := h.shutdownTimes()
	h.log.Info("ws: shutting down", "connections", len(h.clients), "deadline", giveUpAt.Sub(start).Round(time.Millisecond))
	for c := range h.clients {
		c.Close(CloseGoingAway, "server shutting down")
	}
	hard := time.NewTimer(time.Until(hardAt))
	defer hard.Stop()
	giveUp := time.NewTimer(time.Until(giveUpAt))
	defer giveUp.Stop()
	wasHard := false
	goHard := func() {
		if wasHard {
			return
		}
		wasHard = true
		h.ioStop()
		for c := range h.clients {
			c.out.closeNow()
		}
		h.forced.Add(int64(len(h.clients)))
	}
wait:
	for len(h.clients) > 0 || h.inflight > 0 {
		select {
		case op := <-h.ops:
			h.handle(op)
		case <-h.deadlineMoved:
			if !wasHard {
				hardAt, giveUpAt = h.shutdownTimes()
				hard.Reset(time.Until(hardAt))
				giveUp.Reset(time.Until(giveUpAt))
			}
		case <-hard.C:
			goHard()
		case <-giveUp.C:
			goHard()
			break wait
		}
	}
	h.abandon()
	h.ioStop()
	h.presenceWork.closeAndWait()
	h.historyWork.closeAndWait()
	bg.stopTasks()
	close(h.brokerOps.stop)
	<-h.brokerOps.done
	h.finish()
	bg.stopShards()
	h.log.Info("ws: shut down", "took", time.Since(start).Round(time.Millisecond), "closed_hard", h.forced.Load(), "unfinished", h.unended.Load())
}

// abandon unregisters the clients and forgets the channels that are still
// there when drain stops waiting, so Stats end at zero. Their pending
// subscribes fail with ErrHubClosed as soon as Run returns.
func (h *Hub) abandon() {
	if len(h.clients) == 0 && h.inflight == 0 {
		return
	}
	h.unended.Store(int64(len(h.clients)))
	leftPresence := 0
	for c := range h.clients {
		leftPresence += len(h.unregister(c))
		delete(h.clients, c)
		h.stats.connections.Add(-1)
	}
	for _, ch := range h.channels {
		h.dropChannel(ch)
	}
	h.log.Warn("ws: shutdown deadline passed; gave up waiting",
		"connections", h.unended.Load(), "broker_calls", h.inflight, "presence_not_removed", leftPresence)
}

// finish closes the broker and storage and marks the hub done, once.
func (h *Hub) finish() {
	h.finishOnce.Do(func() {
		h.closing.Store(true)
		h.ioStop()
		h.cancel()
		if err := h.broker.Close(); err != nil {
			h.log.Warn("ws: closing broker", "err", err)
		}
		if err := h.storage.Close(); err != nil {
			h.log.Warn("ws: closing storage", "err", err)
		}
		close(h.done)
	})
}
