package pusher

// The parts of the HTTP API built on ws's cluster-wide Go API:
// Hub.Channels, Hub.Channel and Hub.DisconnectUser.

import (
	"context"
	"strings"
)

// channelStat is one channel's occupancy across the cluster.
type channelStat struct {
	subscriptions int // connections subscribed
	users         int // presence members (presence channels)
}

// clusterChannels returns the occupied channels whose names start with
// prefix, but not the user channels (#server-to-user-{id}), which Pusher
// does not list.
func (s *Server) clusterChannels(ctx context.Context, prefix string) (map[string]channelStat, error) {
	infos, err := s.hub.Channels(ctx, prefix)
	if err != nil {
		return nil, err
	}
	out := make(map[string]channelStat, len(infos))
	for _, ci := range infos {
		if !strings.HasPrefix(ci.Name, "#") {
			out[ci.Name] = channelStat{subscriptions: ci.Subscriptions, users: ci.Users}
		}
	}
	return out, nil
}

// clusterChannel returns one channel's occupancy.
func (s *Server) clusterChannel(ctx context.Context, name string) (channelStat, error) {
	ci, err := s.hub.Channel(ctx, name)
	if err != nil {
		return channelStat{}, err
	}
	return channelStat{subscriptions: ci.Subscriptions, users: ci.Users}, nil
}

// disconnectUser closes every connection of userID, on every node.
func (s *Server) disconnectUser(ctx context.Context, userID string) error {
	return s.hub.DisconnectUser(ctx, userID)
}
