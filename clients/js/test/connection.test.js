// The connection's life against the real Go server: states, the URL and
// its parameters, reconnecting (or not) by close code, keepalive.

import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';

import { connect } from '../src/index.js';
import { connected, eventually, mockTimeouts, newClient, next, record, registered, startServer, subscribed, testOptions } from './helpers.js';

test('connect moves through connecting to connected, close to disconnected', async (t) => {
  const server = await startServer(t);
  const client = newClient(t, server, 'alice');
  const log = record(client, ['state', 'connected', 'disconnected']);
  assert.equal(client.state, 'connecting');
  await connected(client);
  assert.equal(client.state, 'connected');
  client.close();
  assert.equal(client.state, 'disconnected');
  assert.deepEqual(log, [
    ['state', 'connected', 'connecting'],
    ['connected'],
    ['state', 'disconnected', 'connected'],
    ['disconnected', { code: 1000, reason: '', willReconnect: false }],
  ]);
  // connect() starts again. The server ends the first connection on its
  // own time after the close frame, so the list may name alice twice for
  // a moment: it must come to the one new connection.
  client.connect();
  await registered(client);
  let users;
  await eventually(async () => (users = await server.call('GET', '/clients')).length === 1, {
    describe: () => `the server lists ${JSON.stringify(users)}`,
  });
  assert.deepEqual(users, ['alice']);
});

test('a URL function (async) is called before every attempt; params and token are added to it', async (t) => {
  const server = await startServer(t);
  let calls = 0;
  const client = connect(
    async () => {
      calls++;
      return server.url + '?from=fn';
    },
    { ...testOptions, token: () => `t${calls}` },
  );
  t.after(() => client.close());
  await connected(client);
  assert.equal(calls, 1);
  const sub = client.subscribe('presence-who');
  await next(sub, 'here');
  assert.deepEqual([...sub.members.keys()], ['token:t1'], 'the user came from ?token=');
  const again = next(client, 'connected');
  await server.drop();
  await again;
  assert.equal(calls, 2);
  await next(sub, 'here', { accept: (members) => members.some((m) => m.id === 'token:t2') });
});

test('reconnects after the socket is dropped without a close frame (1006)', async (t) => {
  const server = await startServer(t);
  const client = newClient(t, server, 'bob');
  await registered(client);
  const disconnected = next(client, 'disconnected');
  await server.drop();
  const [d] = await disconnected;
  assert.deepEqual(d, { code: 1006, reason: '', willReconnect: true });
  assert.equal(client.state, 'connecting');
  await next(client, 'connected');
});

test('reconnects after a graceful shutdown (1001), through refused attempts, to the restarted server', async (t) => {
  const server = await startServer(t);
  const client = newClient(t, server, 'carol');
  const sub = client.subscribe('news');
  await subscribed(sub);
  const disconnected = next(client, 'disconnected');
  const failed = next(client, 'error', { accept: (err) => err.code === 'connect_failed' });
  await server.stop();
  const [d] = await disconnected;
  assert.equal(d.code, 1001);
  assert.equal(d.willReconnect, true);
  const [err] = await failed; // an attempt while the server is down
  assert.match(err.message, /before it opened/);
  const back = next(sub, 'subscribed');
  await server.start();
  const [info] = await back;
  assert.equal(info.resubscribed, true);
  const got = next(sub, 'message');
  await server.publish('news', { n: 1 });
  assert.deepEqual((await got)[0], { n: 1 });
});

test('reconnects after being closed as a slow consumer (4008)', async (t) => {
  const server = await startServer(t, { queue: 16 });
  const client = newClient(t, server, 'slow');
  await registered(client);
  const disconnected = next(client, 'disconnected');
  await server.slow('slow');
  const [d] = await disconnected;
  assert.deepEqual(d, { code: 4008, reason: 'slow consumer', willReconnect: true });
  await next(client, 'connected');
});

for (const code of [4009, 1011, 1012]) {
  test(`reconnects after close code ${code}`, async (t) => {
    const server = await startServer(t);
    const client = newClient(t, server, 'dave');
    await registered(client);
    const disconnected = next(client, 'disconnected');
    await server.closeClients(code, 'test');
    const [d] = await disconnected;
    assert.deepEqual(d, { code, reason: 'test', willReconnect: true });
    await next(client, 'connected');
  });
}

for (const code of [1008, 1000, 4001]) {
  test(`does not reconnect after close code ${code}`, async (t) => {
    const server = await startServer(t);
    const client = newClient(t, server, 'eve');
    const log = record(client, ['state', 'reconnecting']);
    await registered(client);
    const disconnected = next(client, 'disconnected');
    const timers = mockTimeouts(t);
    await server.closeClients(code, 'bye');
    const [d] = await disconnected;
    assert.deepEqual(d, { code, reason: 'bye', willReconnect: false });
    assert.equal(client.state, 'disconnected');
    // Absence check: whatever the client scheduled for up to three times
    // the largest backoff runs now, and nothing may reconnect.
    timers.tick(3 * testOptions.maxReconnectDelay);
    timers.reset();
    await new Promise(setImmediate);
    assert.equal(client.state, 'disconnected');
    assert.deepEqual(log.filter(([e]) => e === 'reconnecting'), []);
    // The server unregisters the closed connection on its own time.
    let clients;
    await eventually(async () => (clients = await server.call('GET', '/clients')).length === 0, {
      describe: () => `the server still has ${JSON.stringify(clients)}`,
    });
    assert.equal(client.state, 'disconnected');
  });
}

test('shouldReconnect overrides the policy', async (t) => {
  const server = await startServer(t);
  const client = newClient(t, server, 'frank', { shouldReconnect: ({ code }) => code === 1008 });
  await registered(client);
  const disconnected = next(client, 'disconnected');
  await server.closeClients(1008, 'policy');
  assert.equal((await disconnected)[0].willReconnect, true);
  await next(client, 'connected');
});

test('failed attempts back off exponentially with jitter, under the cap', async (t) => {
  const server = await startServer(t);
  const client = newClient(t, server, 'gina', { minReconnectDelay: 10, maxReconnectDelay: 80 });
  await registered(client);
  const attempts = [];
  const sixth = next(client, 'reconnecting', { accept: (r) => r.attempt === 6 });
  client.on('reconnecting', (r) => attempts.push(r));
  await server.stop();
  await sixth;
  assert.deepEqual(attempts.map((r) => r.attempt), [1, 2, 3, 4, 5, 6]);
  attempts.forEach((r, i) => {
    assert.ok(r.delay >= 0 && r.delay <= Math.min(80, 10 * 2 ** i), `attempt ${r.attempt}: delay ${r.delay}`);
  });
  await server.start();
  await next(client, 'connected');
});

test('keepalive: a quiet but healthy connection is pinged and stays up', async (t) => {
  const server = await startServer(t);
  const client = newClient(t, server, 'hank', { pingInterval: 100, pongTimeout: 2000 });
  const log = record(client, ['disconnected']);
  await connected(client);
  for (let i = 0; i < 3; i++) await next(client, 'frame', { accept: (f) => f.type === 'pong' });
  assert.equal(client.state, 'connected');
  assert.deepEqual(log, []);
});

test('keepalive: a silent server is noticed, dropped and replaced', async (t) => {
  const server = await startServer(t);
  const client = newClient(t, server, 'ivy', { pingInterval: 200, pongTimeout: 300 });
  const sub = client.subscribe('news');
  await subscribed(sub);
  const disconnected = next(client, 'disconnected', { timeout: 5000 });
  const back = next(sub, 'subscribed', { accept: (info) => info.resubscribed });
  const started = Date.now();
  await server.stall('ivy'); // the server reads but never writes again
  const [d] = await disconnected;
  assert.deepEqual(d, { code: 1006, reason: 'keepalive timeout', willReconnect: true });
  assert.ok(Date.now() - started < 2000, `noticed after ${Date.now() - started} ms`);
  await server.call('POST', '/release?user=ivy'); // let the old socket's writer go
  await back; // on the new connection
  const got = next(sub, 'message');
  await server.publish('news', 'after');
  assert.equal((await got)[0], 'after');
});

test('a connect timeout abandons an attempt that never opens', async (t) => {
  // A listener that accepts TCP but never answers the handshake.
  const sockets = new Set();
  const silent = net.createServer((s) => sockets.add(s));
  await new Promise((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    silent.close();
  });
  const client = connect(`ws://127.0.0.1:${silent.address().port}/ws`, { ...testOptions, connectTimeout: 200 });
  t.after(() => client.close());
  const [err] = await next(client, 'error', { timeout: 5000 });
  assert.equal(err.code, 'connect_failed');
  assert.match(err.message, /connect timeout/);
  assert.equal(client.state, 'connecting');
  await next(client, 'reconnecting');
});

test('a runtime without WebSocket gets a clear error', () => {
  const saved = globalThis.WebSocket;
  globalThis.WebSocket = undefined;
  try {
    assert.throws(() => connect('ws://127.0.0.1:1/ws'), /no WebSocket.*"ws" package/);
  } finally {
    globalThis.WebSocket = saved;
  }
});
