package pusher

// The parts of the HTTP API that need ws's cluster-wide Go API
// (Hub.Channels, Hub.Channel, Hub.DisconnectUser). They are kept here, and
// small, so that wiring them to that API is one file.

import (
	"context"
	"errors"
)

// channelStat is one channel's occupancy across the cluster.
type channelStat struct {
	subscriptions int // connections subscribed
	users         int // presence members (presence channels)
}

// errNoClusterAPI answers what needs the hub's cluster API before it is
// there. TODO(cluster-api): remove with the stubs below.
var errNoClusterAPI = errors.New("this query needs the hub's cluster-wide channel API (Hub.Channels, Hub.Channel, Hub.DisconnectUser)")

// clusterChannels returns the occupied channels whose names start with
// prefix. TODO(cluster-api): Hub.Channels.
func (s *Server) clusterChannels(ctx context.Context, prefix string) (map[string]channelStat, error) {
	return nil, errNoClusterAPI
}

// clusterChannel returns one channel's occupancy. TODO(cluster-api):
// Hub.Channel.
func (s *Server) clusterChannel(ctx context.Context, name string) (channelStat, error) {
	return channelStat{}, errNoClusterAPI
}

// disconnectUser closes every connection of userID, on every node.
// TODO(cluster-api): Hub.DisconnectUser.
func (s *Server) disconnectUser(ctx context.Context, userID string) error {
	return errNoClusterAPI
}

// hasClusterAPI says whether the HTTP API's channel listing, occupancy
// and terminate_connections work (they need the hub's cluster API); the
// acceptance tests check both ways. TODO(cluster-api): true.
const hasClusterAPI = false
