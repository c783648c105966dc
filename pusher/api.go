package pusher

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	ws "github.com/vortechron/go-ws"
)

// Limits of the HTTP API, Pusher's.
const (
	MaxEventChannels = 100 // channels of one event
	MaxBatchEvents   = 10  // events of one batch
	MaxEventNameLen  = 200 // bytes of an event name
)

// serveAPI serves the HTTP API; rest is the path after /apps/.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, rest string) {
	parts := strings.Split(rest, "/")
	if parts[0] != s.app.ID {
		http.Error(w, "Not Found: unknown app id", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(20*s.maxEventBytes+256<<10)))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, "Request Entity Too Large: body over "+strconv.FormatInt(mbe.Limit, 10)+" bytes", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "Bad Request: reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if aerr := s.authenticate(r, body, time.Now()); aerr != nil {
		writeError(w, aerr)
		return
	}
	route, method := parts[1:], http.MethodGet
	var serve func() (any, *apiError)
	switch {
	case len(route) == 1 && route[0] == "events":
		method, serve = http.MethodPost, func() (any, *apiError) { return s.triggerEvents(r.Context(), body) }
	case len(route) == 1 && route[0] == "batch_events":
		method, serve = http.MethodPost, func() (any, *apiError) { return s.triggerBatch(r.Context(), body) }
	case len(route) == 1 && route[0] == "channels":
		serve = func() (any, *apiError) { return s.listChannels(r.Context(), r.URL.Query()) }
	case len(route) == 2 && route[0] == "channels":
		serve = func() (any, *apiError) { return s.channelInfo(r.Context(), route[1], r.URL.Query()) }
	case len(route) == 3 && route[0] == "channels" && route[2] == "users":
		serve = func() (any, *apiError) { return s.channelUsers(r.Context(), route[1]) }
	case len(route) == 3 && route[0] == "users" && route[2] == "terminate_connections":
		method, serve = http.MethodPost, func() (any, *apiError) { return s.terminate(r.Context(), route[1]) }
	default:
		http.Error(w, "Not Found: no such API endpoint", http.StatusNotFound)
		return
	}
	if r.Method != method {
		w.Header().Set("Allow", method)
		http.Error(w, "Method Not Allowed: use "+method, http.StatusMethodNotAllowed)
		return
	}
	out, aerr := serve()
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	b, err := json.Marshal(out)
	if err != nil {
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

func writeError(w http.ResponseWriter, e *apiError) {
	http.Error(w, http.StatusText(e.status)+": "+e.msg, e.status)
}

// eventIn is one event of POST /events or /batch_events.
type eventIn struct {
	Name     string          `json:"name"`
	Data     json.RawMessage `json:"data"`
	Channels []string        `json:"channels"`
	Channel  string          `json:"channel"`
	SocketID string          `json:"socket_id"`
	Info     string          `json:"info"`
}

// triggerEvents publishes one event on one or more channels.
func (s *Server) triggerEvents(ctx context.Context, body []byte) (any, *apiError) {
	var ev eventIn
	if err := decodeObject(body, &ev); err != nil {
		return nil, errorf(http.StatusBadRequest, "body: "+err.Error())
	}
	channels := ev.Channels
	if ev.Channel != "" {
		channels = append(channels, ev.Channel)
	}
	info, aerr := s.trigger(ctx, &ev, channels)
	if aerr != nil {
		return nil, aerr
	}
	if info == nil {
		return struct{}{}, nil
	}
	return map[string]any{"channels": info}, nil
}

// batchIn is the body of POST /batch_events.
type batchIn struct {
	Batch []eventIn `json:"batch"`
}

// triggerBatch publishes up to MaxBatchEvents events, each on its
// channel, in order. All are checked before any is published.
func (s *Server) triggerBatch(ctx context.Context, body []byte) (any, *apiError) {
	var b batchIn
	if err := decodeObject(body, &b); err != nil {
		return nil, errorf(http.StatusBadRequest, "body: "+err.Error())
	}
	if len(b.Batch) == 0 || len(b.Batch) > MaxBatchEvents {
		return nil, errorf(http.StatusBadRequest, "batch must hold 1 to "+strconv.Itoa(MaxBatchEvents)+" events, got "+strconv.Itoa(len(b.Batch)))
	}
	for i := range b.Batch {
		if _, aerr := s.checkEvent(&b.Batch[i], []string{b.Batch[i].Channel}); aerr != nil {
			aerr.msg = "batch[" + strconv.Itoa(i) + "]: " + aerr.msg
			return nil, aerr
		}
	}
	infos := make([]map[string]any, len(b.Batch))
	withInfo := false
	for i := range b.Batch {
		info, aerr := s.trigger(ctx, &b.Batch[i], []string{b.Batch[i].Channel})
		if aerr != nil {
			aerr.msg = "batch[" + strconv.Itoa(i) + "]: " + aerr.msg
			return nil, aerr
		}
		infos[i] = map[string]any{}
		if info != nil {
			withInfo = true
			infos[i] = info[b.Batch[i].Channel]
		}
	}
	if !withInfo {
		return struct{}{}, nil
	}
	return map[string]any{"batch": infos}, nil
}

// trigger checks ev and publishes it on channels; with ev.Info it returns
// the attributes asked for, per channel.
func (s *Server) trigger(ctx context.Context, ev *eventIn, channels []string) (map[string]map[string]any, *apiError) {
	msg, aerr := s.checkEvent(ev, channels)
	if aerr != nil {
		return nil, aerr
	}
	opts := ws.PublishOptions{Event: ev.Name, Except: ev.SocketID}
	done := make(map[string]bool, len(channels))
	for _, ch := range channels {
		if done[ch] {
			continue
		}
		done[ch] = true
		if err := s.hub.PublishWith(ctx, ch, msg, opts); err != nil {
			return nil, publishError(ch, err)
		}
	}
	if ev.Info == "" {
		return nil, nil
	}
	users, subs, _ := parseInfo(ev.Info)
	out := make(map[string]map[string]any, len(done))
	for ch := range done {
		attrs, aerr := s.attributes(ctx, ch, false, users, subs)
		if aerr != nil {
			return nil, aerr
		}
		out[ch] = attrs
	}
	return out, nil
}

// checkEvent checks one event for channels and returns its message.
func (s *Server) checkEvent(ev *eventIn, channels []string) (json.RawMessage, *apiError) {
	switch {
	case ev.Name == "":
		return nil, errorf(http.StatusBadRequest, `missing "name"`)
	case len(ev.Name) > MaxEventNameLen:
		return nil, errorf(http.StatusBadRequest, "event name is over "+strconv.Itoa(MaxEventNameLen)+" bytes")
	case strings.HasPrefix(ev.Name, "pusher:") || strings.HasPrefix(ev.Name, "pusher_internal:"):
		return nil, errorf(http.StatusBadRequest, "event names starting with pusher: or pusher_internal: are the protocol's")
	case len(channels) == 0:
		return nil, errorf(http.StatusBadRequest, `missing "channels" (or "channel")`)
	case len(channels) > MaxEventChannels:
		return nil, errorf(http.StatusBadRequest, "an event goes to at most "+strconv.Itoa(MaxEventChannels)+" channels, got "+strconv.Itoa(len(channels)))
	case len(ev.Data) == 0 || string(ev.Data) == "null":
		return nil, errorf(http.StatusBadRequest, `missing "data"`)
	case ev.SocketID != "" && !validSocketID(ev.SocketID):
		return nil, errorf(http.StatusBadRequest, `socket_id must look like "123.456"`)
	}
	for _, ch := range channels {
		if err := ws.ValidChannelName(ch); err != nil {
			return nil, errorf(http.StatusBadRequest, "channel "+strconv.Quote(cut(ch))+": "+strings.TrimPrefix(err.Error(), "ws: "))
		}
	}
	if ev.Info != "" {
		users, _, err := parseInfo(ev.Info)
		if err != nil {
			return nil, errorf(http.StatusBadRequest, err.Error())
		}
		for _, ch := range channels {
			if users && !strings.HasPrefix(ch, ws.PresencePrefix) {
				return nil, errorf(http.StatusBadRequest, "info=user_count is for presence channels only")
			}
		}
	}
	msg := ev.Data
	if ev.Data[0] == '"' {
		var data string
		if err := json.Unmarshal(ev.Data, &data); err != nil {
			return nil, errorf(http.StatusBadRequest, `"data" is not a valid JSON string`)
		}
		if len(data) > s.maxEventBytes {
			return nil, errorf(http.StatusRequestEntityTooLarge, "data is "+strconv.Itoa(len(data))+" bytes, the limit is "+strconv.Itoa(s.maxEventBytes))
		}
		msg = messageFromData(data)
	} else if len(ev.Data) > s.maxEventBytes {
		return nil, errorf(http.StatusRequestEntityTooLarge, "data is "+strconv.Itoa(len(ev.Data))+" bytes, the limit is "+strconv.Itoa(s.maxEventBytes))
	}
	return msg, nil
}

// publishError is the answer to a publication the hub did not make.
func publishError(channel string, err error) *apiError {
	switch {
	case errors.Is(err, ws.ErrPublishUncertain):
		return errorf(http.StatusGatewayTimeout, "publishing on "+channel+" timed out: it may have been delivered")
	case errors.Is(err, ws.ErrBrokerUnavailable), errors.Is(err, ws.ErrHubClosed):
		return errorf(http.StatusServiceUnavailable, "publishing on "+channel+" failed: the service is unavailable; try again shortly")
	}
	return errorf(http.StatusInternalServerError, "publishing on "+channel+" failed")
}

// parseInfo reads an info parameter: a comma-separated list of
// user_count and subscription_count.
func parseInfo(info string) (users, subs bool, err error) {
	for _, a := range strings.Split(info, ",") {
		switch strings.TrimSpace(a) {
		case "user_count":
			users = true
		case "subscription_count":
			subs = true
		case "":
		default:
			return false, false, errors.New("info: unknown attribute " + strconv.Quote(cut(a)) + "; use user_count and subscription_count")
		}
	}
	return users, subs, nil
}

// validSocketID reports whether id has the form "123.456".
func validSocketID(id string) bool {
	a, b, ok := strings.Cut(id, ".")
	return ok && allDigits(a) && allDigits(b) && len(id) <= 64
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
