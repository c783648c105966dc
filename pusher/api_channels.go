package pusher

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	ws "github.com/vortechron/go-ws"
)

// listChannels answers GET /channels: the occupied channels, optionally
// those whose name starts with filter_by_prefix, with user_count when
// asked (presence channels only, as Pusher requires).
func (s *Server) listChannels(ctx context.Context, q url.Values) (any, *apiError) {
	prefix := q.Get("filter_by_prefix")
	users, subs, err := parseInfo(q.Get("info"))
	if err != nil {
		return nil, errorf(http.StatusBadRequest, err.Error())
	}
	if users && !strings.HasPrefix(prefix, ws.PresencePrefix) {
		return nil, errorf(http.StatusBadRequest, "info=user_count needs filter_by_prefix=presence-")
	}
	stats, err := s.clusterChannels(ctx, prefix)
	if err != nil {
		return nil, clusterError(err)
	}
	out := make(map[string]map[string]any, len(stats))
	for name, st := range stats {
		attrs := map[string]any{}
		if users {
			attrs["user_count"] = st.users
		}
		if subs {
			attrs["subscription_count"] = st.subscriptions
		}
		out[name] = attrs
	}
	return map[string]any{"channels": out}, nil
}

// channelInfo answers GET /channels/{name}: occupied, and user_count
// (presence channels) and subscription_count when asked.
func (s *Server) channelInfo(ctx context.Context, name string, q url.Values) (any, *apiError) {
	if err := ws.ValidChannelName(name); err != nil {
		return nil, errorf(http.StatusBadRequest, "channel: "+strings.TrimPrefix(err.Error(), "ws: "))
	}
	users, subs, err := parseInfo(q.Get("info"))
	if err != nil {
		return nil, errorf(http.StatusBadRequest, err.Error())
	}
	if users && !strings.HasPrefix(name, ws.PresencePrefix) {
		return nil, errorf(http.StatusBadRequest, "info=user_count is for presence channels only")
	}
	return s.attributes(ctx, name, true, users, subs)
}

// attributes are what is asked of a channel: occupied (which GET
// /channels/{name} always answers and an event's info never does),
// user_count and subscription_count.
func (s *Server) attributes(ctx context.Context, name string, occupied, users, subs bool) (map[string]any, *apiError) {
	st, err := s.clusterChannel(ctx, name)
	if err != nil {
		return nil, clusterError(err)
	}
	out := map[string]any{}
	if occupied {
		out["occupied"] = st.subscriptions > 0
	}
	if users {
		out["user_count"] = st.users
	}
	if subs {
		out["subscription_count"] = st.subscriptions
	}
	return out, nil
}

// userOut is one member in GET /channels/{name}/users.
type userOut struct {
	ID string `json:"id"`
}

// channelUsers answers GET /channels/{name}/users: the users of a
// presence channel, across the cluster.
func (s *Server) channelUsers(ctx context.Context, name string) (any, *apiError) {
	if err := ws.ValidChannelName(name); err != nil {
		return nil, errorf(http.StatusBadRequest, "channel: "+strings.TrimPrefix(err.Error(), "ws: "))
	}
	if !strings.HasPrefix(name, ws.PresencePrefix) {
		return nil, errorf(http.StatusBadRequest, "users are listed for presence channels only")
	}
	members, err := s.hub.PresenceMembers(ctx, name)
	if err != nil {
		return nil, clusterError(err)
	}
	out := make([]userOut, len(members))
	for i, m := range members {
		out[i] = userOut{ID: m.UserID}
	}
	return map[string]any{"users": out}, nil
}

// terminate answers POST /users/{id}/terminate_connections: every
// connection of the user, on every node, is closed.
func (s *Server) terminate(ctx context.Context, userID string) (any, *apiError) {
	if userID == "" || len(userID) > maxUserIDLength {
		return nil, errorf(http.StatusBadRequest, "user id must be 1 to "+strconv.Itoa(maxUserIDLength)+" bytes")
	}
	if err := s.disconnectUser(ctx, userID); err != nil {
		return nil, clusterError(err)
	}
	return struct{}{}, nil
}

// clusterError is the answer to a query the hub could not make.
func clusterError(err error) *apiError {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, ws.ErrClusterIncomplete):
		return errorf(http.StatusGatewayTimeout, "not every node answered in time; try again")
	}
	return errorf(http.StatusServiceUnavailable, "the service is unavailable; try again shortly")
}
