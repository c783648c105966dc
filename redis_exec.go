package ws

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// execPipe sends pipe and returns Exec's error, with every command
// holding its own result or error.
//
// go-redis gives a pipeline's commands no error when the pipeline failed
// with an error reply before any of them was sent: a new connection whose
// handshake Redis refused (WRONGPASS after the password changed).
// go-redis#2871 was fixed for client-side errors only. Such a command
// reads as a success with an empty reply, so a PUBLISH that never left
// this process returned nil. When Exec failed and no command holds an error, execPipe gives each the
// error, as one that was not sent (noConnError).
func execPipe(ctx context.Context, pipe redis.Pipeliner) error {
	cmds, err := pipe.Exec(ctx)
	if err == nil {
		return nil
	}
	for _, c := range cmds {
		if c.Err() != nil {
			return err
		}
	}
	notSent := &noConnError{err: err}
	for _, c := range cmds {
		c.SetErr(notSent)
	}
	return err
}
