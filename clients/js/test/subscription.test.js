// Subscriptions against the real Go server: messages, resubscribing
// after reconnects, refusals, whispers.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { connected, newClient, next, record, startServer, subscribed } from './helpers.js';

test('subscribe delivers messages; unsubscribe stops them', async (t) => {
  const server = await startServer(t);
  const client = newClient(t, server, 'alice');
  const sub = client.subscribe('news');
  assert.equal(sub.state, 'subscribing');
  assert.equal(client.subscribe('news'), sub, 'one subscription per channel');
  const [info] = await next(sub, 'subscribed');
  assert.deepEqual(info, { resubscribed: false });
  const got = [];
  sub.on('message', (message, meta) => got.push([message, meta]));
  const third = next(sub, 'message', { accept: (m) => m.n === 3 });
  for (let n = 1; n <= 3; n++) await server.publish('news', { n });
  await third;
  assert.deepEqual(got, [1, 2, 3].map((n) => [{ n }, { channel: 'news' }]));

  sub.unsubscribe();
  assert.equal(sub.state, 'unsubscribed');
  assert.equal(client.subscription('news'), undefined);
  // A later publication is not delivered, even if the server sends it
  // before it has read the unsubscribe.
  const other = client.subscribe('other');
  await subscribed(other);
  await server.publish('news', { n: 4 });
  const sentinel = next(other, 'message');
  await server.publish('other', 'after');
  await sentinel; // published after news 4, on the same connection
  assert.equal(got.length, 3);

  // subscribe() again on the same object.
  sub.subscribe();
  assert.equal(client.subscription('news'), sub);
  await subscribed(sub);
});

test('every subscription is replayed after each reconnect', async (t) => {
  const server = await startServer(t);
  const client = newClient(t, server, 'bob');
  const channels = ['a', 'b', 'private-c', 'presence-d'];
  const subs = channels.map((c) => client.subscribe(c));
  await Promise.all(subs.map((s) => subscribed(s)));
  for (let round = 0; round < 3; round++) {
    const again = subs.map((s) => next(s, 'subscribed', { accept: (i) => i.resubscribed }));
    const states = subs.map((s) => next(s, 'state', { accept: (st) => st === 'subscribing' }));
    if (round === 1) await server.closeClients(1001, 'deploy');
    else await server.drop();
    await Promise.all(states); // each went back to subscribing
    await Promise.all(again);
    const got = subs.map((s) => next(s, 'message'));
    for (const c of channels) await server.publish(c, { round, c });
    const messages = await Promise.all(got);
    assert.deepEqual(messages.map(([m]) => m), channels.map((c) => ({ round, c })));
  }
  const stats = await server.call('GET', '/stats');
  assert.equal(stats.subscriptions, channels.length, 'no subscription was doubled');
});

test('subscriptions made while disconnected are sent on connect', async (t) => {
  const server = await startServer(t);
  const client = newClient(t, server, 'carol');
  await connected(client);
  client.close();
  const sub = client.subscribe('later');
  assert.equal(sub.state, 'subscribing');
  client.connect();
  await subscribed(sub);
  const got = next(sub, 'message');
  await server.publish('later', 1);
  assert.equal((await got)[0], 1);
});

test('a refused subscribe ends the subscription with an error', async (t) => {
  const server = await startServer(t);
  const client = newClient(t, server, ''); // anonymous: private channels are refused
  const sub = client.subscribe('private-orders');
  const [err] = await next(sub, 'error');
  assert.equal(err.name, 'WsError');
  assert.equal(err.code, 'unauthorized');
  assert.equal(err.action, 'subscribe');
  assert.equal(err.channel, 'private-orders');
  assert.equal(sub.state, 'unsubscribed');
  assert.equal(client.subscription('private-orders'), undefined);
  // Without an 'error' listener on the subscription, the client gets it.
  const bad = client.subscribe('bad channel!');
  const [err2] = await next(client, 'error');
  assert.equal(err2.code, 'invalid_channel');
  assert.equal(bad.state, 'unsubscribed');
});

test('whispers go both ways; from is the sender; the sender does not get its own', async (t) => {
  const server = await startServer(t);
  const alice = newClient(t, server, 'alice');
  const bob = newClient(t, server, 'bob');
  const a = alice.subscribe('presence-chat');
  const b = bob.subscribe('presence-chat');
  await Promise.all([subscribed(a), subscribed(b)]);
  const aliceLog = record(a, ['whisper']);

  const toBob = next(b, 'whisper');
  const typed = new Promise((resolve) => b.listenForWhisper('typing', (data, from) => resolve([data, from])));
  assert.equal(a.whisper('typing', { isTyping: true }), true);
  assert.deepEqual(await toBob, ['typing', { isTyping: true }, 'alice']);
  assert.deepEqual(await typed, [{ isTyping: true }, 'alice']);

  const toAlice = next(a, 'whisper');
  assert.equal(b.whisper('read', { id: 7 }), true);
  assert.deepEqual(await toAlice, ['read', { id: 7 }, 'bob']);
  assert.deepEqual(aliceLog, [['whisper', 'read', { id: 7 }, 'bob']], 'alice got only bob\'s whisper');

  // A whisper without data carries null.
  const empty = next(b, 'whisper');
  a.whisper('ping');
  assert.deepEqual(await empty, ['ping', null, 'alice']);
});

test('whispers are not queued while disconnected: false and a not_connected error', async (t) => {
  const server = await startServer(t);
  const alice = newClient(t, server, 'alice');
  const bob = newClient(t, server, 'bob');
  const a = alice.subscribe('presence-chat');
  const b = bob.subscribe('presence-chat');
  await Promise.all([subscribed(a), subscribed(b)]);
  alice.close();
  const errors = record(a, ['error']);
  assert.equal(a.whisper('typing', { isTyping: true }), false);
  assert.equal(errors.length, 1);
  assert.equal(errors[0][1].code, 'not_connected');
  // After reconnecting, bob gets the next whisper and never the stale one.
  alice.connect();
  await subscribed(a);
  const got = next(b, 'whisper');
  a.whisper('typing', { isTyping: false });
  assert.deepEqual(await got, ['typing', { isTyping: false }, 'alice']);
});

test('a whisper refused by the server reaches the subscription as an error', async (t) => {
  const server = await startServer(t);
  const client = newClient(t, server, 'dan');
  const sub = client.subscribe('presence-chat');
  await subscribed(sub);
  const failed = next(sub, 'error');
  sub.whisper('x'.repeat(100), 1); // event longer than 64 bytes
  const [err] = await failed;
  assert.equal(err.code, 'whisper_invalid');
  assert.equal(err.action, 'whisper');
  assert.equal(sub.state, 'subscribed');
});
