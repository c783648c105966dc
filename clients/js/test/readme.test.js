// Promises of README.md that an application relies on, against the real
// Go server: a listener that throws, an unsubscribe while disconnected,
// a whisper before the subscription is confirmed, reconnect: false. Each
// test quotes the sentence it holds the client to.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { connected, newClient, next, record, startServer, subscribed, withTimeout } from './helpers.js';

/**
 * Takes over uncaught exceptions until n have arrived, which the promise
 * resolves with; the runner's own handlers are put back then, or when t
 * ends.
 */
function uncaught(t, n) {
  const saved = process.listeners('uncaughtException');
  process.removeAllListeners('uncaughtException');
  let restored = false;
  const restore = () => {
    if (restored) return;
    restored = true;
    process.removeAllListeners('uncaughtException');
    for (const l of saved) process.on('uncaughtException', l);
  };
  t.after(restore);
  const errors = [];
  return new Promise((resolve) => {
    process.on('uncaughtException', (err) => {
      errors.push(err);
      if (errors.length < n) return;
      restore();
      resolve(errors);
    });
  });
}

// README "Errors": "Listeners that throw do not disturb the client or
// the other listeners; the error is rethrown on a fresh task, where the
// browser or Node reports it."
test('a listener that throws disturbs neither the client nor the other listeners; its error is rethrown', async (t) => {
  const server = await startServer(t);
  const client = newClient(t, server, 'alice');
  const sub = client.subscribe('news');
  await subscribed(sub);

  const rethrown = uncaught(t, 2);
  const boom = new Error('render failed');
  sub.on('message', () => {
    throw boom;
  });
  const got = [];
  sub.on('message', (message) => got.push(message));
  const second = next(sub, 'message', { accept: (m) => m.n === 2 });
  await server.publish('news', { n: 1 });
  await server.publish('news', { n: 2 });
  await second;
  assert.deepEqual(got, [{ n: 1 }, { n: 2 }], 'the listener after the one that threw got every message');
  assert.deepEqual(await withTimeout(rethrown, 5000, 'the listener\'s two errors were not rethrown'), [boom, boom]);
  assert.equal(client.state, 'connected');
  assert.equal(sub.state, 'subscribed');
});

// README "What happens to frames while disconnected": "`unsubscribe` |
// applied locally; nothing to send". A channel left while offline must
// not be joined again by the resubscribe after the reconnect.
test('an unsubscribe while disconnected holds: the reconnect does not subscribe the channel again', async (t) => {
  const server = await startServer(t);
  const alice = newClient(t, server, 'alice');
  const aliceRoom = alice.subscribe('presence-room');
  await subscribed(aliceRoom);
  const bob = newClient(t, server, 'bob');
  const bobRoom = bob.subscribe('presence-room');
  await next(bobRoom, 'here', { accept: (members) => members.length === 2 });

  let leftWhile;
  let log = null; // what the subscription emits after it was left
  alice.once('disconnected', () => {
    leftWhile = alice.state;
    aliceRoom.unsubscribe(); // the user leaves the room while the network is down
    log = record(aliceRoom, ['subscribed', 'here', 'message', 'state']);
  });
  const gone = next(alice, 'disconnected');
  const back = next(alice, 'connected');
  const aliceLeft = next(bobRoom, 'leaving');
  await server.drop('alice');
  await gone;
  assert.deepEqual(await aliceLeft, [{ id: 'alice', info: { name: 'alice' } }]);
  assert.equal(leftWhile, 'connecting', 'unsubscribed while disconnected, waiting to reconnect');
  assert.equal(aliceRoom.state, 'unsubscribed');
  await back;

  // Sent after everything the reconnect replayed, on the same connection.
  const sentinel = alice.subscribe('sentinel');
  await subscribed(sentinel);
  assert.deepEqual(await server.presence('presence-room'), [{ id: 'bob', info: { name: 'bob' } }]);
  const after = next(sentinel, 'message');
  await server.publish('presence-room', 'not for alice');
  await server.publish('sentinel', 'after');
  await after;
  assert.deepEqual(log, [], 'nothing emitted for the channel alice left');
  assert.equal(aliceRoom.state, 'unsubscribed');
  assert.equal(alice.subscription('presence-room'), undefined);
  assert.deepEqual([...bobRoom.members.keys()], ['bob']);
});

// README "Whispers": "Whispers are never queued: while disconnected, or
// before the subscription is confirmed, `whisper` returns `false` and
// emits `error` (`not_connected` or `not_subscribed`) instead of sending
// a stale typing indicator a few seconds later."
test('a whisper before the subscription is confirmed returns false, emits not_subscribed and is never delivered', async (t) => {
  const server = await startServer(t);
  const bob = newClient(t, server, 'bob');
  const b = bob.subscribe('presence-chat');
  await subscribed(b);
  const alice = newClient(t, server, 'alice');
  await connected(alice);
  const bobLog = record(b, ['whisper']);

  // A fresh subscribe, sent but not confirmed yet.
  const a = alice.subscribe('presence-chat');
  const errors = record(a, ['error']);
  assert.equal(a.state, 'subscribing');
  assert.equal(a.whisper('typing', { stale: 1 }), false);
  await subscribed(a);
  let fresh = next(b, 'whisper');
  assert.equal(a.whisper('typing', { fresh: 1 }), true);
  assert.deepEqual(await fresh, ['typing', { fresh: 1 }, 'alice']);

  // The same after a reconnect: the subscription is replayed with the
  // connection, and is not confirmed when "connected" fires.
  let sentOnConnect;
  alice.once('connected', () => {
    sentOnConnect = a.whisper('typing', { stale: 2 });
  });
  const resubscribed = next(a, 'subscribed', { accept: (info) => info.resubscribed });
  await server.drop('alice');
  await resubscribed;
  assert.equal(sentOnConnect, false);
  fresh = next(b, 'whisper');
  assert.equal(a.whisper('typing', { fresh: 2 }), true);
  assert.deepEqual(await fresh, ['typing', { fresh: 2 }, 'alice']);

  assert.deepEqual(
    errors.map(([, e]) => [e.code, e.action, e.channel]),
    [
      ['not_subscribed', 'whisper', 'presence-chat'],
      ['not_subscribed', 'whisper', 'presence-chat'],
    ],
  );
  assert.deepEqual(bobLog.map(([, , data]) => data), [{ fresh: 1 }, { fresh: 2 }], 'bob never got a stale whisper');
});

// README "connect(url, options)": "`reconnect` | `true` | `false`: never
// reconnect by itself", and "Client": "`connect()` | connect again after
// `close()` or a close the policy does not retry".
test('reconnect: false never reconnects by itself, after a lost connection or a failed attempt', async (t) => {
  const server = await startServer(t);
  const client = newClient(t, server, 'alice', { reconnect: false });
  const sub = client.subscribe('news');
  await subscribed(sub);
  const log = record(client, ['reconnecting']);

  // A dropped socket (1006), which the default policy retries.
  const lost = next(client, 'disconnected');
  await server.drop('alice');
  assert.deepEqual(await lost, [{ code: 1006, reason: '', willReconnect: false }]);
  assert.equal(client.state, 'disconnected');

  // A failed attempt: reported, and not retried either.
  await server.stop();
  const failed = next(client, 'error', { accept: (err) => err.code === 'connect_failed' });
  const gaveUp = next(client, 'disconnected');
  client.connect();
  await failed;
  assert.equal((await gaveUp)[0].willReconnect, false);
  assert.equal(client.state, 'disconnected');
  assert.deepEqual(log, [], 'no reconnect was scheduled');

  // connect() brings it back, with its subscriptions.
  await server.start();
  const back = next(sub, 'subscribed', { accept: (info) => info.resubscribed });
  client.connect();
  await back;
  const got = next(sub, 'message');
  await server.publish('news', 'back');
  assert.equal((await got)[0], 'back');
});
