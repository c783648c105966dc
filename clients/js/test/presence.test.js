// Presence against the real Go server: here/joining/leaving, and the
// members map equal to the server's truth (hub.PresenceMembers) after
// churn.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { eventually, newClient, next, startServer, subscribed } from './helpers.js';

const info = (id) => ({ name: id });

test('here, joining and leaving keep the members map', async (t) => {
  const server = await startServer(t);
  const alice = newClient(t, server, 'alice');
  const room = alice.subscribe('presence-room');
  const [here] = await next(room, 'here');
  assert.deepEqual(here, [{ id: 'alice', info: info('alice') }]);

  // here() called late gets the current list at once.
  let late;
  room.here((members) => (late = members));
  assert.deepEqual(late, here);

  const joined = next(room, 'joining');
  const bob = newClient(t, server, 'bob');
  const bobRoom = bob.subscribe('presence-room');
  const bobHere = next(bobRoom, 'here');
  assert.deepEqual(await joined, [{ id: 'bob', info: info('bob') }]);
  assert.deepEqual([...room.members], [['alice', info('alice')], ['bob', info('bob')]]);
  assert.deepEqual(await bobHere, [[{ id: 'alice', info: info('alice') }, { id: 'bob', info: info('bob') }]]);

  // A second tab of bob's is not a join; closing one of two is not a leave.
  const tab = newClient(t, server, 'bob');
  const tabRoom = tab.subscribe('presence-room');
  await next(tabRoom, 'here');
  tab.close();
  const left = next(room, 'leaving');
  bobRoom.unsubscribe();
  assert.deepEqual(await left, [{ id: 'bob', info: info('bob') }]);
  assert.deepEqual([...room.members.keys()], ['alice']);
  assert.equal(room.members.size, 1);
});

test('the members map of every client equals the server truth after churn', async (t) => {
  const server = await startServer(t);
  const channel = 'presence-churn';
  const clients = new Map(); // name -> {client, sub}
  const add = (name, user) => {
    const client = newClient(t, server, user);
    const sub = client.subscribe(channel);
    clients.set(name, { client, sub, user });
    return sub;
  };
  const users = ['u0', 'u1', 'u2', 'u3', 'u4', 'u5'];
  for (const u of users) add(u, u);
  add('u1-tab2', 'u1');
  await Promise.all([...clients.values()].map(({ sub }) => subscribed(sub)));
  await converged(server, channel, clients, users);

  // Churn, all at once: leave by unsubscribe, by close, by a dropped
  // socket (reconnects), by a server close (reconnects), a second tab
  // going, newcomers arriving, one leaving again at once.
  clients.get('u0').sub.unsubscribe();
  clients.get('u2').client.close();
  clients.get('u1-tab2').client.close();
  add('u6', 'u6');
  add('u7', 'u7');
  await Promise.all([server.drop('u3'), server.closeClients(4009, 'ping timeout', 'u4')]);
  clients.get('u7').client.close();
  add('u8', 'u8').unsubscribe();
  add('u9', 'u9');
  await server.drop('u5');

  for (const name of ['u0', 'u2', 'u1-tab2', 'u7', 'u8']) clients.delete(name);
  await converged(server, channel, clients, ['u1', 'u3', 'u4', 'u5', 'u6', 'u9']);

  // Reconnect everyone at once and check again.
  await server.drop();
  await converged(server, channel, clients, ['u1', 'u3', 'u4', 'u5', 'u6', 'u9']);
});

/**
 * Waits until the server's member list is want and every subscription in
 * clients holds exactly that list, info included.
 */
async function converged(server, channel, clients, want) {
  let truth = [];
  const view = (sub) => [...sub.members].map(([id, i]) => ({ id, info: i })).sort((a, b) => (a.id < b.id ? -1 : 1));
  await eventually(
    async () => {
      truth = await server.presence(channel);
      if (JSON.stringify(truth.map((m) => m.id)) !== JSON.stringify(want)) return false;
      return [...clients.values()].every(({ sub }) => sub.state === 'subscribed' && JSON.stringify(view(sub)) === JSON.stringify(truth));
    },
    {
      timeout: 15_000,
      describe: () =>
        `\ntruth: ${JSON.stringify(truth)}\nwant: ${want}\n` +
        [...clients].map(([name, { sub }]) => `${name} (${sub.state}): ${JSON.stringify(view(sub))}`).join('\n'),
    },
  );
  assert.deepEqual(truth, want.map((id) => ({ id, info: info(id) })));
}
