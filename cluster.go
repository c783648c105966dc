package ws

// The server-side API across the cluster: which channels are occupied and
// by how many connections, on every node. docs/cluster.md describes each
// method's guarantee and cost.

import (
	"context"
	"slices"
	"strings"
	"time"
)

// ChannelInfo describes one channel across the cluster.
type ChannelInfo struct {
	// Name is the channel's name.
	Name string
	// Subscriptions counts the connections subscribed to the channel on
	// every node; 0 means the channel is not occupied.
	Subscriptions int
	// Users is the number of members of a presence channel (users, not
	// connections), from the presence storage; 0 for other channels.
	Users int
}

// Channels returns every channel whose name starts with prefix ("" for
// all) and that has at least one subscriber on some node of the cluster,
// ordered by name.
//
// It asks every node for its counts over the broker and waits for all
// their answers, up to Config.ClusterTimeout or ctx; then it reads the
// member counts of the presence channels from the storage. If some node
// did not answer in time it returns the channels of the nodes that did,
// with an error wrapping ErrClusterIncomplete. Cost: one publication to
// every node and one answer from each, carrying the node's matching
// channels; one storage round trip for the presence channels.
func (h *Hub) Channels(ctx context.Context, prefix string) ([]ChannelInfo, error) {
	replies, err := h.ask(ctx, ctlRequest{Op: reqChannels, Prefix: prefix})
	if replies == nil && err != nil {
		return nil, err
	}
	totals := make(map[string]int)
	for _, r := range replies {
		for name, n := range r.Channels {
			totals[name] += n
		}
	}
	infos := make([]ChannelInfo, 0, len(totals))
	var presence []int
	for name, n := range totals {
		if n > 0 {
			if kindOf(name) == presenceChannel {
				presence = append(presence, len(infos))
			}
			infos = append(infos, ChannelInfo{Name: name, Subscriptions: n})
		}
	}
	if len(presence) > 0 {
		names := make([]string, len(presence))
		for i, j := range presence {
			names[i] = infos[j].Name
		}
		users, uerr := h.presenceUsers(ctx, names)
		if uerr != nil && err == nil {
			err = uerr
		}
		for i, j := range presence {
			if i < len(users) {
				infos[j].Users = users[i]
			}
		}
	}
	slices.SortFunc(infos, func(a, b ChannelInfo) int { return strings.Compare(a.Name, b.Name) })
	return infos, err
}

// Channel returns one channel's subscriptions across the cluster
// (Subscriptions 0: not occupied) and, for a presence channel, its
// members. It asks every node as Channels does, with answers of a few
// bytes, and returns what the nodes that answered said, with an error
// wrapping ErrClusterIncomplete, when some did not.
func (h *Hub) Channel(ctx context.Context, name string) (ChannelInfo, error) {
	info := ChannelInfo{Name: name}
	if err := ValidChannelName(name); err != nil {
		return info, err
	}
	replies, err := h.ask(ctx, ctlRequest{Op: reqChannel, Channel: name})
	if replies == nil && err != nil {
		return info, err
	}
	for _, r := range replies {
		info.Subscriptions += r.Count
	}
	if kindOf(name) == presenceChannel {
		users, uerr := h.presenceUsers(ctx, []string{name})
		if uerr != nil && err == nil {
			err = uerr
		}
		if len(users) == 1 {
			info.Users = users[0]
		}
	}
	return info, err
}

// localChannels returns the channels of this node whose name starts with
// prefix and their local subscriptions. Safe from any goroutine: it reads
// chanByName and the fan-out snapshots, so it never waits for Run nor
// holds it up.
func (h *Hub) localChannels(prefix string) map[string]int {
	out := make(map[string]int)
	h.chanByName.Range(func(k, v any) bool {
		if name := k.(string); strings.HasPrefix(name, prefix) {
			if n := v.(*channel).subscribers(); n > 0 {
				out[name] = n
			}
		}
		return true
	})
	return out
}

// localSubscriptions returns the number of this node's connections
// subscribed to name. Safe from any goroutine.
func (h *Hub) localSubscriptions(name string) int {
	if ch, ok := h.chanByName.Load(name); ok {
		return ch.(*channel).subscribers()
	}
	return 0
}

// subscribers counts the channel's subscribers; safe from any
// goroutine.
func (ch *channel) subscribers() int {
	n := 0
	for _, s := range ch.sets {
		n += int(s.size.Load())
	}
	return n
}

// presenceCounter counts the members of many presence channels at once
// (RedisStorage: one pipelined round trip).
type presenceCounter interface {
	presenceCounts(ctx context.Context, channels []string) ([]int, error)
}

// presenceUsers returns the number of members of each presence channel.
func (h *Hub) presenceUsers(ctx context.Context, channels []string) ([]int, error) {
	if pc, ok := h.storage.(presenceCounter); ok {
		return pc.presenceCounts(ctx, channels)
	}
	out := make([]int, len(channels))
	for i, ch := range channels {
		if pc, ok := h.storage.(PresenceCounter); ok {
			n, err := pc.PresenceCount(ctx, ch)
			if err != nil {
				return out, storageError("presence count", ch, err)
			}
			out[i] = n
			continue
		}
		members, _, err := h.storage.PresenceMembers(ctx, ch)
		if err != nil {
			return out, storageError("presence list", ch, err)
		}
		out[i] = len(members)
	}
	return out, nil
}

// startCluster starts, beside Run, what the cluster API needs: the hook
// runner, the control goroutine, and the occupancy worker and
// maintenance when an occupancy hook is set. The control goroutine and
// the occupancy goroutines stop with bg.stop; the hook runner, which
// must call the hooks they queue as they stop, stops after them, in the
// function startCluster returns (called by stopTasks).
func (h *Hub) startCluster(bg *background) (finish func()) {
	giveUp := func() time.Time { _, at := h.shutdownTimes(); return at }
	go h.hooks.run()
	bg.tasks.Add(1)
	go func() { defer bg.tasks.Done(); h.ctl.run(bg.stop, giveUp) }()
	if h.occ.on {
		bg.tasks.Add(1)
		go func() { defer bg.tasks.Done(); h.occ.run(bg.stop, giveUp) }()
		if m, ok := h.storage.(OccupancyMaintainer); ok && m.MaintainInterval() > 0 {
			bg.tasks.Add(1)
			go func() { defer bg.tasks.Done(); h.occ.maintainEvery(m, bg.stop) }()
		}
	}
	return func() { h.hooks.finish(giveUp()) }
}
