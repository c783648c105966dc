package ws

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

var _ BatchSubscriber = (*RedisBroker)(nil)

// SubscribeBatch subscribes every channel of subs with one SUBSCRIBE
// (SSUBSCRIBE on Redis Cluster) per partition naming them all, and returns
// once Redis has confirmed each of them or ctx ended, with one error per
// entry as Subscribe would return it. A channel listed twice is
// subscribed once, with the later handler, and both entries get its
// result.
func (b *RedisBroker) SubscribeBatch(ctx context.Context, subs []BrokerSubscription) []error {
	errs := make([]error, len(subs))
	fail := func(err error) []error {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return errs
	}
	if b.closed.Load() {
		return fail(ErrHubClosed)
	}
	if err := ctx.Err(); err != nil {
		return fail(fmt.Errorf("%w: redis subscribe: %w", ErrBrokerUnavailable, err))
	}
	last := map[string]int{} // channel -> its last entry
	for i, s := range subs {
		if s.Handler == nil {
			errs[i] = fmt.Errorf("ws: redis subscribe %q: nil handler", s.Channel)
			continue
		}
		last[s.Channel] = i
	}
	names := make([]string, 0, len(last))
	for name := range last {
		names = append(names, name)
	}
	unlock, err := b.lockAll(ctx, names)
	if err != nil {
		return fail(fmt.Errorf("%w: redis subscribe: %w", ErrBrokerUnavailable, err))
	}
	defer unlock()

	byShard := map[int][]string{}
	for _, name := range names {
		i := b.shardOf(name)
		byShard[i] = append(byShard[i], name)
	}
	result := map[string]error{}
	for i, chans := range byShard {
		rchs := make([]string, len(chans))
		handlers := make([]func([]byte), len(chans))
		for j, name := range chans {
			rchs[j], handlers[j] = b.redisChannel(i, name), subs[last[name]].Handler
		}
		for j, err := range b.shards[i].subscribeMany(ctx, rchs, handlers) {
			if err != nil && !errors.Is(err, ErrHubClosed) {
				err = fmt.Errorf("%w: redis subscribe %q: %w", ErrBrokerUnavailable, chans[j], err)
			}
			result[chans[j]] = err
		}
	}
	for i, s := range subs {
		if s.Handler != nil {
			errs[i] = result[s.Channel]
		}
	}
	return errs
}

// UnsubscribeBatch stops delivery for every channel in channels at once,
// then tells Redis with one UNSUBSCRIBE (SUNSUBSCRIBE) per partition. An
// error means only that Redis may keep sending on some of them, and the
// broker drops what it sends.
func (b *RedisBroker) UnsubscribeBatch(ctx context.Context, channels []string) error {
	if b.closed.Load() || len(channels) == 0 {
		return nil
	}
	names := slices.Compact(slices.Sorted(slices.Values(channels)))
	unlock, err := b.lockAll(ctx, names)
	if err != nil {
		return fmt.Errorf("ws: redis unsubscribe %d channels: %w", len(names), err)
	}
	defer unlock()
	byShard := map[int][]string{}
	for _, name := range names {
		i := b.shardOf(name)
		byShard[i] = append(byShard[i], b.redisChannel(i, name))
	}
	var errs []error
	for i, rchs := range byShard {
		if err := b.shards[i].unsubscribe(ctx, rchs); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ws: redis unsubscribe %d channels: %w", len(names), err)
	}
	return nil
}

// lockAll takes the per-channel lock of every name (distinct), in sorted
// order so that two batches never wait for each other.
func (b *RedisBroker) lockAll(ctx context.Context, names []string) (unlock func(), err error) {
	slices.Sort(names)
	unlocks := make([]func(), 0, len(names))
	unlock = func() {
		for _, u := range slices.Backward(unlocks) {
			u()
		}
	}
	for _, name := range names {
		u, err := b.ops.lock(ctx, name)
		if err != nil {
			unlock()
			return nil, err
		}
		unlocks = append(unlocks, u)
	}
	return unlock, nil
}
