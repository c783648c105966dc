package ws

import (
	"encoding/json"
	"net/http"
)

// Health states, the "status" field of the health handler's body.
const (
	HealthOK                = "ok"                 // serving; 200
	HealthStarting          = "starting"           // Run has not been called, or the hub is not Ready yet; 503
	HealthShuttingDown      = "shutting_down"      // draining connections; 503
	HealthStopped           = "stopped"            // Run has returned; 503
	HealthBrokerUnavailable = "broker_unavailable" // the broker lost its connection; 503
)

// Health is the body of the health handler's answer.
type Health struct {
	Status        string `json:"status"`
	Node          string `json:"node"`
	Connections   int64  `json:"connections"`
	BrokerHealthy bool   `json:"broker_healthy"`
}

// Health reports whether the hub should receive new connections: its
// Status is HealthOK while Run is running, the hub is Ready (its control
// channels subscribed), shutdown has not begun and the broker is
// connected (see BrokerHealth).
func (h *Hub) Health() Health {
	hl := Health{
		Node:          h.nodeID,
		Connections:   h.stats.connections.Load(),
		BrokerHealthy: h.brokerHealthy(),
	}
	switch {
	case h.isDone():
		hl.Status = HealthStopped
	case h.closing.Load():
		hl.Status = HealthShuttingDown
	case !h.started.Load():
		hl.Status = HealthStarting
	case !hl.BrokerHealthy:
		hl.Status = HealthBrokerUnavailable
	case !h.ctl.isReady():
		hl.Status = HealthStarting
	default:
		hl.Status = HealthOK
	}
	return hl
}

// HealthHandler returns an http.Handler for load balancer and Kubernetes
// readiness checks. It answers GET and HEAD with 200 and a small JSON
// Health body when the hub is serving, and with 503 and the same body
// while it is starting, shutting down or stopped, or while its broker is
// disconnected, so traffic moves to other nodes before clients are told
// to go away. It never blocks and does no I/O beyond the answer.
func (h *Hub) HealthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		hl := h.Health()
		status := http.StatusOK
		if hl.Status != HealthOK {
			status = http.StatusServiceUnavailable
		}
		body, _ := json.Marshal(hl)
		body = append(body, '\n')
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		if r.Method != http.MethodHead {
			_, _ = w.Write(body)
		}
	})
}
