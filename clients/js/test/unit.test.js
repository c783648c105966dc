// The client's bookkeeping on a fake socket, frame by frame: recovery
// positions and dedup (the protocol of docs/protocol.md), presence
// versions, retries, routing, and the pure policy functions.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { backoffDelay, connect, defaultShouldReconnect } from '../src/index.js';
import { mockClock, mockTimeouts, next, record } from './helpers.js';

/** A WebSocket class whose sockets the test opens, feeds and drops. */
function fakeWebSocket() {
  const sockets = [];
  class FakeSocket {
    readyState = 0;
    sent = [];
    constructor(url) {
      this.url = url;
      sockets.push(this);
    }
    send(s) {
      if (this.readyState !== 1) throw new Error('send on a socket that is not open');
      this.sent.push(JSON.parse(s));
    }
    close(code = 1000, reason = '') {
      this.readyState = 3;
      queueMicrotask(() => this.onclose({ code, reason }));
    }
    // the server's side
    open() {
      this.readyState = 1;
      this.onopen({});
    }
    receive(frame) {
      this.onmessage({ data: JSON.stringify(frame) });
    }
    drop(code = 1006, reason = '') {
      this.readyState = 3;
      this.onclose({ code, reason });
    }
    // an attempt that fails before it opens
    fail(message) {
      this.onerror({ message });
    }
  }
  return { WebSocket: FakeSocket, sockets };
}

/** A client on a fake socket, connected, with fast reconnects. */
async function fakeClient(t, options = {}) {
  const fake = fakeWebSocket();
  const client = connect('ws://fake.test/ws', { WebSocket: fake.WebSocket, minReconnectDelay: 1, maxReconnectDelay: 5, pingInterval: 0, ...options });
  t.after(() => client.close());
  await waitFor(() => fake.sockets.length === 1); // the URL resolves asynchronously
  fake.sockets[0].open();
  const current = () => fake.sockets[fake.sockets.length - 1];
  /** Drops the socket and opens the next one the client makes. */
  const reconnect = async (code = 1006) => {
    const n = fake.sockets.length;
    current().drop(code);
    await waitFor(() => fake.sockets.length === n + 1);
    current().open();
  };
  return { client, fake, current, reconnect };
}

async function waitFor(check, timeout = 2000) {
  const deadline = Date.now() + timeout;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met');
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

test('history: offsets are tracked, duplicates dropped, since sent on resubscribe, recovered signalled', async (t) => {
  const { client, current, reconnect } = await fakeClient(t);
  const sub = client.subscribe('history-feed');
  assert.deepEqual(current().sent, [{ action: 'subscribe', channel: 'history-feed' }]);
  const log = record(sub, ['subscribed', 'message', 'recovered', 'reset']);
  current().receive({ type: 'subscribed', channel: 'history-feed', offset: 5, epoch: 'e1' });
  assert.deepEqual(sub.position, { offset: 5, epoch: 'e1' });
  for (const offset of [6, 7, 7, 6, 5, 8]) current().receive({ type: 'message', channel: 'history-feed', message: { offset }, offset });
  assert.deepEqual(sub.position, { offset: 8, epoch: 'e1' });

  await reconnect();
  assert.deepEqual(current().sent, [{ action: 'subscribe', channel: 'history-feed', since: { offset: 8, epoch: 'e1' } }]);
  current().receive({ type: 'subscribed', channel: 'history-feed', offset: 10, epoch: 'e1', recovered: true });
  for (const offset of [9, 10, 10, 11]) current().receive({ type: 'message', channel: 'history-feed', message: { offset }, offset });

  assert.deepEqual(log, [
    ['subscribed', { resubscribed: false, offset: 5, epoch: 'e1' }],
    ['message', { offset: 6 }, { channel: 'history-feed', offset: 6 }],
    ['message', { offset: 7 }, { channel: 'history-feed', offset: 7 }],
    ['message', { offset: 8 }, { channel: 'history-feed', offset: 8 }],
    ['subscribed', { resubscribed: true, offset: 10, epoch: 'e1', recovered: true }],
    ['recovered', { resubscribed: true, offset: 10, epoch: 'e1', recovered: true }],
    ['message', { offset: 9 }, { channel: 'history-feed', offset: 9 }],
    ['message', { offset: 10 }, { channel: 'history-feed', offset: 10 }],
    ['message', { offset: 11 }, { channel: 'history-feed', offset: 11 }],
  ]);
});

test('history: recovered:false signals reset and restarts from the channel\'s latest offset', async (t) => {
  const { client, current, reconnect } = await fakeClient(t);
  const sub = client.subscribe('history-feed', { since: { offset: 40, epoch: 'old' } });
  assert.deepEqual(current().sent, [{ action: 'subscribe', channel: 'history-feed', since: { offset: 40, epoch: 'old' } }]);
  const resets = [];
  sub.on('reset', (info) => resets.push(info));
  const got = [];
  sub.on('message', (m, meta) => got.push(meta.offset));
  current().receive({ type: 'subscribed', channel: 'history-feed', offset: 3, epoch: 'new', recovered: false });
  assert.deepEqual(resets, [{ resubscribed: false, offset: 3, epoch: 'new', recovered: false }]);
  assert.deepEqual(sub.position, { offset: 3, epoch: 'new' });
  // The server sends only the messages above the offset it named; the
  // client holds it to that.
  for (const offset of [3, 4, 4, 2]) current().receive({ type: 'message', channel: 'history-feed', message: null, offset });
  assert.deepEqual(got, [4]);

  // A resubscribe whose since was never answered is sent again.
  await reconnect();
  assert.deepEqual(current().sent, [{ action: 'subscribe', channel: 'history-feed', since: { offset: 4, epoch: 'new' } }]);
  await reconnect();
  assert.deepEqual(current().sent, [{ action: 'subscribe', channel: 'history-feed', since: { offset: 4, epoch: 'new' } }]);
});

test('history: a subscribed with recovered:false under a live subscription is a reset', async (t) => {
  const { client, current } = await fakeClient(t);
  const sub = client.subscribe('history-feed');
  const log = record(sub, ['subscribed', 'recovered', 'reset', 'message']);
  current().receive({ type: 'subscribed', channel: 'history-feed', offset: 7, epoch: 'e1' });
  current().receive({ type: 'message', channel: 'history-feed', message: 8, offset: 8 });
  // Redis lost the history: the server resets its subscribers.
  current().receive({ type: 'subscribed', channel: 'history-feed', offset: 1, epoch: 'e2', recovered: false });
  assert.deepEqual(sub.position, { offset: 1, epoch: 'e2' });
  for (const offset of [1, 2, 3]) current().receive({ type: 'message', channel: 'history-feed', message: offset, offset });
  assert.equal(sub.state, 'subscribed');
  assert.deepEqual(log, [
    ['subscribed', { resubscribed: false, offset: 7, epoch: 'e1' }],
    ['message', 8, { channel: 'history-feed', offset: 8 }],
    ['subscribed', { resubscribed: true, offset: 1, epoch: 'e2', recovered: false }],
    ['reset', { resubscribed: true, offset: 1, epoch: 'e2', recovered: false }],
    ['message', 2, { channel: 'history-feed', offset: 2 }],
    ['message', 3, { channel: 'history-feed', offset: 3 }],
  ]);
});

test('history: since on a channel without history is a reset, and since is not sent again', async (t) => {
  const { client, current, reconnect } = await fakeClient(t);
  const sub = client.subscribe('plain', { since: { offset: 1, epoch: 'e' } });
  const reset = next(sub, 'reset');
  current().receive({ type: 'subscribed', channel: 'plain' });
  assert.deepEqual(await reset, [{ resubscribed: false, recovered: false }]);
  assert.equal(sub.position, null);
  await reconnect();
  assert.deepEqual(current().sent, [{ action: 'subscribe', channel: 'plain' }]);
  assert.throws(() => client.subscribe('other', { since: { offset: '1' } }), /since must be/);
});

test('messages without offsets are all delivered; listen() filters by event name', async (t) => {
  const { client, current } = await fakeClient(t);
  const sub = client.subscribe('news');
  current().receive({ type: 'subscribed', channel: 'news' });
  const all = [];
  const orders = [];
  sub.on('message', (m, meta) => all.push([m, meta]));
  sub.listen('order.created', (m, meta) => orders.push([m, meta]));
  current().receive({ type: 'message', channel: 'news', message: 1 });
  current().receive({ type: 'message', channel: 'news', message: 1 });
  current().receive({ type: 'message', channel: 'news', event: 'order.created', message: { id: 9 } });
  current().receive({ type: 'message', channel: 'elsewhere', message: 2 });
  assert.deepEqual(all, [
    [1, { channel: 'news' }],
    [1, { channel: 'news' }],
    [{ id: 9 }, { channel: 'news', event: 'order.created' }],
  ]);
  assert.deepEqual(orders, [[{ id: 9 }, { channel: 'news', event: 'order.created' }]]);
});

test('presence: members resets, join/leave apply in order, stale versions are dropped', async (t) => {
  const { client, current } = await fakeClient(t);
  const sub = client.subscribe('presence-room');
  const log = record(sub, ['here', 'joining', 'leaving']);
  const f = (event, version, extra) => ({ type: 'presence', channel: 'presence-room', event, version, ...extra });
  current().receive({ type: 'subscribed', channel: 'presence-room' });
  current().receive(f('members', 3, { users: [{ id: 'a', info: { n: 1 } }, { id: 'b' }], count: 2 }));
  current().receive(f('join', 4, { user: { id: 'c' } }));
  current().receive(f('join', 4, { user: { id: 'd' } })); // stale: dropped
  current().receive(f('leave', 2, { user: { id: 'a' } })); // stale: dropped
  current().receive(f('leave', 5, { user: { id: 'b' } }));
  current().receive(f('join', 6, { user: { id: 'c' } })); // already there: no joining
  current().receive(f('leave', 7, { user: { id: 'zz' } })); // not there: no leaving
  assert.deepEqual([...sub.members], [['a', { n: 1 }], ['c', undefined]]);
  // A fresh list resets everything, its version included.
  current().receive(f('members', 1, { users: [{ id: 'x' }] }));
  current().receive(f('join', 2, { user: { id: 'y', info: 'Y' } }));
  // Frames without a version are always applied.
  current().receive(f('leave', undefined, { user: { id: 'x' } }));
  assert.deepEqual([...sub.members], [['y', 'Y']]);
  assert.deepEqual(log, [
    ['here', [{ id: 'a', info: { n: 1 } }, { id: 'b' }]],
    ['joining', { id: 'c' }],
    ['leaving', { id: 'b' }],
    ['here', [{ id: 'x' }]],
    ['joining', { id: 'y', info: 'Y' }],
    ['leaving', { id: 'x' }],
  ]);
});

test('a subscribe answered unavailable is retried after a backoff; an unexpected unsubscribed resubscribes', async (t) => {
  const { client, current } = await fakeClient(t);
  const sub = client.subscribe('news');
  const errors = record(sub, ['error']);
  current().receive({ type: 'error', code: 'unavailable', error: 'broker down', action: 'subscribe', channel: 'news' });
  assert.equal(sub.state, 'subscribing');
  await waitFor(() => current().sent.length === 2);
  assert.deepEqual(current().sent[1], { action: 'subscribe', channel: 'news' });
  assert.equal(errors[0][1].code, 'unavailable');
  current().receive({ type: 'subscribed', channel: 'news' });
  assert.equal(sub.state, 'subscribed');
  current().receive({ type: 'unsubscribed', channel: 'news' });
  assert.equal(sub.state, 'subscribing');
  await waitFor(() => current().sent.length === 3);
  assert.deepEqual(current().sent[2], { action: 'subscribe', channel: 'news' });
});

test('error frames without a subscription go to the client; an unsubscribe answered not_subscribed is quiet', async (t) => {
  const { client, current } = await fakeClient(t);
  const errors = record(client, ['error']);
  current().receive({ type: 'error', code: 'rate_limited', error: 'slow down' });
  current().receive({ type: 'error', code: 'not_subscribed', error: 'no', action: 'unsubscribe', channel: 'x' });
  current().onmessage({ data: 'not json' });
  assert.deepEqual(errors.map(([, e]) => e.code), ['rate_limited', 'bad_frame']);
});

test('close() from a disconnected listener stops the reconnect', async (t) => {
  const { client, fake, current } = await fakeClient(t);
  const log = record(client, ['reconnecting', 'disconnected']);
  client.on('disconnected', () => client.close());
  const timers = mockTimeouts(t);
  current().drop(1001);
  assert.equal(client.state, 'disconnected');
  assert.deepEqual(log, [
    ['disconnected', { code: 1001, reason: '', willReconnect: true }],
    ['disconnected', { code: 1000, reason: '', willReconnect: false }],
  ]);
  // Absence check: every timer the client set runs now; none may open a socket.
  timers.runAll();
  timers.reset();
  await new Promise(setImmediate);
  assert.equal(client.state, 'disconnected');
  assert.equal(fake.sockets.length, 1);
});

/**
 * A client on a fake socket under mocked timers, not opened: the test
 * drives every attempt. settle() lets the client's asynchronous steps
 * (the URL resolves before each socket) run; nothing waits on a clock.
 */
async function clockedClient(t, timers, options = {}) {
  const fake = fakeWebSocket();
  const client = connect('ws://fake.test/ws', { WebSocket: fake.WebSocket, minReconnectDelay: 1, maxReconnectDelay: 5, pingInterval: 0, ...options });
  t.after(() => client.close());
  const settle = () => new Promise(setImmediate);
  await settle();
  assert.equal(fake.sockets.length, 1);
  /** Runs the pending retry and returns the socket it made. */
  const retry = async () => {
    const n = fake.sockets.length;
    timers.runAll();
    await settle();
    assert.equal(fake.sockets.length, n + 1, 'the retry made no socket');
    return fake.sockets[n];
  };
  return { client, fake, settle, retry };
}

test('a connection open at least 5 s resets the backoff; a shorter one does not', async (t) => {
  const timers = mockClock(t);
  const { client, fake, retry } = await clockedClient(t, timers);
  const attempts = [];
  client.on('reconnecting', ({ attempt }) => attempts.push(attempt));
  fake.sockets[0].drop(1006); // never opened
  (await retry()).drop(1006); // never opened
  let s = await retry();
  s.open();
  timers.tick(4999);
  s.drop(1006); // open 4.999 s: not stable, the count goes on
  s = await retry();
  s.open();
  timers.tick(5000);
  s.drop(1006); // open 5 s: stable, the count starts again
  assert.deepEqual(attempts, [1, 2, 3, 1]);
});

test('pingInterval 0 sends no keepalive ping; a positive one does', async (t) => {
  const timers = mockClock(t); // the keepalive reads Date.now()
  for (const [pingInterval, want] of [[0, 0], [1000, 1]]) {
    const { fake, settle } = await clockedClient(t, timers, { pingInterval, pongTimeout: 60_000 });
    fake.sockets[0].open();
    timers.tick(1000);
    await settle();
    const pings = fake.sockets[0].sent.filter((f) => f.action === 'ping').length;
    assert.equal(pings, want, `pingInterval ${pingInterval}: ${pings} pings after 1 s of silence`);
    timers.tick(100 * 25_000);
    await settle();
    if (pingInterval === 0) assert.deepEqual(fake.sockets[0].sent, [], 'a keepalive-less client sent something');
  }
});

test('connect() while waiting for a retry tries at once and drops the pending retry', async (t) => {
  const timers = mockTimeouts(t);
  const { client, fake, settle } = await clockedClient(t, timers, { minReconnectDelay: 1000, maxReconnectDelay: 1000 });
  const log = record(client, ['reconnecting']);
  fake.sockets[0].open();
  fake.sockets[0].drop(1006);
  assert.equal(client.state, 'connecting');
  assert.equal(log.length, 1); // a retry is pending
  client.connect();
  await settle();
  assert.equal(fake.sockets.length, 2, 'connect() did not try at once');
  fake.sockets[1].open();
  assert.equal(client.state, 'connected');
  timers.runAll();
  await settle();
  assert.equal(fake.sockets.length, 2, 'the retry that connect() replaced ran as well');
  assert.equal(client.state, 'connected');
});

// A WebSocket fires error and then close (1006) when an attempt fails:
// the "ws" package in one go, a browser with a microtask checkpoint
// between the two, and Node 22's own WebSocket not at all (no close; it
// stays CONNECTING). Each must be one failure and one retry at once,
// never a wait for connectTimeout.
for (const [how, fail] of [
  ['error then close at once ("ws" package)', (s) => { s.fail('Unexpected server response: 503'); s.drop(1006); }],
  ['error, a microtask checkpoint, close (browsers)', async (s) => { s.fail(''); await Promise.resolve(); s.drop(1006); }],
  ['error and no close (Node 22 built-in WebSocket)', (s) => s.fail('Received network error or non-101 status code.')],
]) {
  test(`a failed attempt is one failure and an immediate retry: ${how}`, async (t) => {
    const timers = mockTimeouts(t);
    const { client, fake, settle, retry } = await clockedClient(t, timers, { connectTimeout: 60_000 });
    const log = record(client, ['error', 'reconnecting', 'disconnected']);
    await fail(fake.sockets[0]);
    await settle();
    assert.deepEqual(log.map(([e, v]) => [e, e === 'error' ? v.code : v.attempt]), [['error', 'connect_failed'], ['reconnecting', 1]]);
    assert.match(log[0][1].message, /code 1006/);
    assert.equal(client.state, 'connecting');
    (await retry()).open(); // the retry is due after the backoff, not connectTimeout
    assert.equal(client.state, 'connected');
    assert.equal(log.length, 2, 'a second failure was reported');
  });
}

test('the URL gets params and the token; http(s) becomes ws(s)', async (t) => {
  const fake = fakeWebSocket();
  const client = connect('https://example.test/ws?x=1', {
    WebSocket: fake.WebSocket,
    params: async () => ({ user: 'al ice', skip: undefined }),
    token: 'tok',
    tokenParam: 'jwt',
  });
  t.after(() => client.close());
  await waitFor(() => fake.sockets.length === 1);
  assert.equal(fake.sockets[0].url, 'wss://example.test/ws?x=1&user=al+ice&jwt=tok');
});

test('a URL function that fails is retried with backoff and reported', async (t) => {
  const fake = fakeWebSocket();
  let calls = 0;
  const client = connect(
    () => {
      if (++calls < 3) throw new Error('no token yet');
      return 'ws://fake.test/ws';
    },
    { WebSocket: fake.WebSocket, minReconnectDelay: 1, maxReconnectDelay: 2 },
  );
  t.after(() => client.close());
  const errors = record(client, ['error']);
  await waitFor(() => fake.sockets.length === 1);
  assert.deepEqual(errors.map(([, e]) => e.code), ['url_failed', 'url_failed']);
  assert.match(errors[0][1].message, /no token yet/);
});

test('backoffDelay: full jitter under an exponential cap', () => {
  assert.equal(backoffDelay(0, 500, 20000, () => 0), 0);
  assert.equal(backoffDelay(0, 500, 20000, () => 1), 500);
  assert.equal(backoffDelay(3, 500, 20000, () => 1), 4000);
  assert.equal(backoffDelay(10, 500, 20000, () => 1), 20000);
  assert.equal(backoffDelay(1000, 500, 20000, () => 0.5), 10000);
});

test('defaultShouldReconnect follows the close-code table', () => {
  const yes = [1001, 1005, 1006, 1009, 1011, 1012, 1013, 1014, 4008, 4009];
  const no = [1000, 1002, 1003, 1007, 1008, 1010, 4000, 4001, 4403];
  for (const code of yes) assert.equal(defaultShouldReconnect({ code, reason: '' }), true, `code ${code}`);
  for (const code of no) assert.equal(defaultShouldReconnect({ code, reason: '' }), false, `code ${code}`);
});
