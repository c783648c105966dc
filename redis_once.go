package ws

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// Every command of ws that changes what Redis holds or delivers in a way
// that sending it twice would repeat (a PUBLISH, a Lua script) goes to
// Redis at most once, whatever the client's MaxRetries says.
//
// go-redis sends a command, or a whole pipeline, again after a read
// timeout, a dropped connection or a READONLY reply when MaxRetries > 0,
// and 3 is its default. A PUBLISH whose first attempt reached Redis is
// then delivered twice, and a presence script run twice answers the
// join it made itself with "already a member", so nobody announces it.
// Clients ws builds have retries off; a client the application passes in
// (NewRedisBrokerFromClient, NewRedisStorageFromClient) keeps its own
// settings, which the rest of the application relies on. So each such
// command says so itself: go-redis retries neither a command whose
// NoRetry reports true nor a pipeline that holds one.
//
// The failure then reaches ws, which knows what it means: Publish returns
// ErrPublishUncertain, and a presence join fails with an error frame (the
// hub removes the entry, and the client subscribes again).

// onceCmd is a *redis.Cmd that go-redis sends at most once.
type onceCmd struct{ *redis.Cmd }

// NoRetry tells go-redis not to send the command again.
func (onceCmd) NoRetry() bool { return true }

// onceIntCmd is a *redis.IntCmd that go-redis sends at most once.
type onceIntCmd struct{ *redis.IntCmd }

// NoRetry tells go-redis not to send the command again.
func (onceIntCmd) NoRetry() bool { return true }

// processor is a client, which sends a command, or a pipeline, which
// queues it.
type processor interface {
	Process(ctx context.Context, cmd redis.Cmder) error
}

// publishAtMostOnce sends p (a client) or queues in p (a pipeline) a
// PUBLISH of payload on channel, SPUBLISH when sharded, that go-redis
// sends at most once.
func publishAtMostOnce(ctx context.Context, p processor, sharded bool, channel string, payload []byte) *redis.IntCmd {
	var cmd *redis.IntCmd
	if sharded { // constant names: a string variable would cost an allocation per publication
		cmd = redis.NewIntCmd(ctx, "spublish", channel, payload)
	} else {
		cmd = redis.NewIntCmd(ctx, "publish", channel, payload)
	}
	_ = p.Process(ctx, onceIntCmd{cmd}) // the error is cmd's own
	return cmd
}

// once returns a redis.Scripter whose scripts p sends (or queues) at most
// once each: redis.Script's Run, EvalSha and Eval take it in place of a
// client or pipeline.
func once(p processor) redis.Scripter { return onceScripter{p} }

type onceScripter struct{ p processor }

func (s onceScripter) eval(ctx context.Context, name, body string, keys []string, args []any) *redis.Cmd {
	cmdArgs := make([]any, 0, 3+len(keys)+len(args))
	cmdArgs = append(cmdArgs, name, body, len(keys))
	for _, k := range keys {
		cmdArgs = append(cmdArgs, k)
	}
	cmdArgs = append(cmdArgs, args...)
	cmd := redis.NewCmd(ctx, cmdArgs...)
	if len(keys) > 0 {
		cmd.SetFirstKeyPos(3) // Redis Cluster routes by the first key
	}
	_ = s.p.Process(ctx, onceCmd{cmd}) // the error is cmd's own
	return cmd
}

func (s onceScripter) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return s.eval(ctx, "eval", script, keys, args)
}

func (s onceScripter) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return s.eval(ctx, "evalsha", sha1, keys, args)
}

func (s onceScripter) EvalRO(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return s.eval(ctx, "eval_ro", script, keys, args)
}

func (s onceScripter) EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return s.eval(ctx, "evalsha_ro", sha1, keys, args)
}

// ScriptExists and ScriptLoad change nothing: sending them again is
// harmless, and they go as go-redis would send them.
func (s onceScripter) ScriptExists(ctx context.Context, hashes ...string) *redis.BoolSliceCmd {
	args := make([]any, 0, 2+len(hashes))
	args = append(args, "script", "exists")
	for _, h := range hashes {
		args = append(args, h)
	}
	cmd := redis.NewBoolSliceCmd(ctx, args...)
	_ = s.p.Process(ctx, cmd)
	return cmd
}

func (s onceScripter) ScriptLoad(ctx context.Context, script string) *redis.StringCmd {
	cmd := redis.NewStringCmd(ctx, "script", "load", script)
	_ = s.p.Process(ctx, cmd)
	return cmd
}
