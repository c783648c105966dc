// Recovery on history channels against the real Go server, as
// docs/protocol.md describes it. The test server keeps history for
// channels named history-* (1000 publications) and history-small-* (10
// publications).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { connect } from '../src/index.js';
import { eventually, next, startServer, testOptions } from './helpers.js';

/**
 * A client whose next connection attempt waits until open() is called
 * after hold(): what is published meanwhile is missed for certain.
 */
function gatedClient(t, server, user, options = {}) {
  let gate = null;
  const client = connect(
    async () => {
      if (gate) await gate.promise;
      return server.url;
    },
    { ...testOptions, params: { user }, ...options },
  );
  t.after(() => client.close());
  return {
    client,
    hold() {
      let resolve;
      gate = { promise: new Promise((r) => (resolve = r)), resolve };
    },
    open() {
      const g = gate;
      gate = null;
      g.resolve();
    },
  };
}

/** Collects sub's messages as {n, offset}. */
function collect(sub) {
  const got = [];
  sub.on('message', (m, meta) => got.push({ n: m.n, offset: meta.offset }));
  return got;
}

async function publishRange(server, channel, from, to) {
  for (let n = from; n <= to; n++) await server.publish(channel, { n });
}

test('recovers what was published while disconnected, exactly once and in order', { timeout: 20_000 }, async (t) => {
  const server = await startServer(t);
  const { client, hold, open } = gatedClient(t, server, 'reader');
  const sub = client.subscribe('history-feed');
  const [info] = await next(sub, 'subscribed', { timeout: 5000 });
  assert.equal(typeof info.epoch, 'string', 'subscribed on a history channel carries an epoch');
  const got = collect(sub);
  await publishRange(server, 'history-feed', 1, 5);
  await eventually(() => got.length === 5, { timeout: 5000 });

  for (const [round, cut] of [[1, () => server.drop('reader')], [2, () => server.closeClients(1001, 'deploy', 'reader')]]) {
    hold();
    const gone = next(client, 'disconnected');
    await cut();
    await gone;
    await publishRange(server, 'history-feed', round * 5 + 1, round * 5 + 5);
    const recovered = next(sub, 'recovered', { timeout: 5000 });
    open();
    const [r] = await recovered;
    assert.equal(r.recovered, true);
    await eventually(() => got.length === round * 5 + 5, { timeout: 5000 });
  }
  await publishRange(server, 'history-feed', 16, 20);
  await eventually(() => got.length === 20, { timeout: 5000, describe: () => JSON.stringify(got) });
  assert.deepEqual(got.map((m) => m.n), Array.from({ length: 20 }, (_, i) => i + 1));
  for (let i = 1; i < got.length; i++) assert.ok(got[i].offset > got[i - 1].offset, `offsets ${JSON.stringify(got)}`);
  assert.equal(sub.position.offset, got[got.length - 1].offset);
});

test('a resumed page (subscribe with since) gets what it missed', { timeout: 20_000 }, async (t) => {
  const server = await startServer(t);
  const first = connect(server.url, { ...testOptions, params: { user: 'page' } });
  t.after(() => first.close());
  const sub = first.subscribe('history-page');
  await next(sub, 'subscribed', { timeout: 5000 });
  const seen = next(sub, 'message', { accept: (m) => m.n === 3 });
  await publishRange(server, 'history-page', 1, 3);
  await seen;
  const saved = sub.position; // what a page would keep in sessionStorage
  first.close();
  assert.equal(typeof saved?.epoch, 'string');
  await publishRange(server, 'history-page', 4, 6);

  const reloaded = connect(server.url, { ...testOptions, params: { user: 'page' } });
  t.after(() => reloaded.close());
  const again = reloaded.subscribe('history-page', { since: saved });
  const got = collect(again);
  const [r] = await next(again, 'recovered', { timeout: 5000 });
  assert.equal(r.recovered, true);
  await eventually(() => got.length === 3, { timeout: 5000 });
  assert.deepEqual(got.map((m) => m.n), [4, 5, 6]);
});

test('reset when the server lost the history (restarted hub, new epoch)', { timeout: 20_000 }, async (t) => {
  const server = await startServer(t);
  const { client } = gatedClient(t, server, 'restart');
  const sub = client.subscribe('history-restart');
  const [first] = await next(sub, 'subscribed', { timeout: 5000 });
  assert.equal(typeof first.epoch, 'string');
  const seen = next(sub, 'message');
  await server.publish('history-restart', { n: 1 });
  await seen;
  const reset = next(sub, 'reset', { timeout: 5000 });
  await server.stop();
  await server.start();
  const [r] = await reset;
  assert.equal(r.recovered, false);
  assert.notEqual(r.epoch, first.epoch);
  assert.deepEqual(sub.position, { offset: r.offset, epoch: r.epoch });
  const after = next(sub, 'message');
  await server.publish('history-restart', { n: 2 });
  assert.deepEqual((await after)[0], { n: 2 });
});

test('reset when more was published than the history keeps', { timeout: 20_000 }, async (t) => {
  const server = await startServer(t);
  const { client, hold, open } = gatedClient(t, server, 'window');
  const sub = client.subscribe('history-small-window');
  const [first] = await next(sub, 'subscribed', { timeout: 5000 });
  assert.equal(typeof first.epoch, 'string');
  hold();
  const gone = next(client, 'disconnected');
  await server.drop('window');
  await gone;
  await publishRange(server, 'history-small-window', 1, 25); // keeps 10
  const reset = next(sub, 'reset', { timeout: 5000 });
  open();
  const [r] = await reset;
  assert.equal(r.recovered, false);
  assert.equal(r.epoch, first.epoch);
  assert.equal(r.offset, first.offset + 25);
});

test('a recovered backlog larger than the send queue arrives whole', { timeout: 30_000 }, async (t) => {
  const server = await startServer(t, { queue: 16 });
  const { client, hold, open } = gatedClient(t, server, 'backlog');
  const sub = client.subscribe('history-backlog');
  const [first] = await next(sub, 'subscribed', { timeout: 5000 });
  assert.equal(typeof first.epoch, 'string');
  const got = collect(sub);
  hold();
  const gone = next(client, 'disconnected');
  await server.drop('backlog');
  await gone;
  await publishRange(server, 'history-backlog', 1, 160); // 10x the queue
  const disconnects = [];
  client.on('disconnected', (d) => disconnects.push(d));
  open();
  await next(sub, 'recovered', { timeout: 5000 });
  await eventually(() => got.length === 160, { timeout: 10_000, describe: () => `${got.length} of 160` });
  assert.deepEqual(got.map((m) => m.n), Array.from({ length: 160 }, (_, i) => i + 1));
  assert.deepEqual(disconnects, [], 'not cut as a slow consumer');
});
