// The Laravel Echo scenario: two users with Echo (one on each node when
// PUSHER_NODES names two), public, private and presence channels, whispers,
// and the server SDK's API calls, all against the Go server.
import { app, assert, connected, echo, Inbox, nodes, ok, Pusher, sdk, status, until } from './lib.mjs';

const nodeA = nodes[0];
const nodeB = nodes[1] || nodes[0];

const alice = echo(nodeA, 'alice', 'reverb');
const bob = echo(nodeB, 'bob', 'pusher');
await Promise.all([connected(alice.connector.pusher), connected(bob.connector.pusher)]);
assert.match(alice.socketId(), /^\d+\.\d+$/);
ok('connected');

// Public channel: listen() with a dot (no namespace) and without
// (App\Events\ namespace), as Laravel broadcasts them.
const news = { alice: new Inbox('alice news'), bob: new Inbox('bob news') };
const shipped = new Inbox('alice OrderShipped');
const subscribed = (ch) => new Promise((resolve) => ch.subscribed(resolve));
const aliceNews = alice.channel('news').listen('.Posted', news.alice.push).listen('OrderShipped', shipped.push);
const bobNews = bob.channel('news').listen('.Posted', news.bob.push);
await Promise.all([subscribed(aliceNews), subscribed(bobNews)]);
ok('channel subscribed');

// Private channel, authorized by the Go server's AuthHandler.
const orders = new Inbox('alice orders');
const aliceOrders = alice.private('orders.1').listen('.Updated', orders.push);
await subscribed(aliceOrders);
const denied = new Inbox('private denied');
bob.private('secret.1').error(denied.push);
const err = await denied.next();
assert.equal(err.status, 403);
ok('private subscribed, refused one denied');

// Presence: here, joining, leaving, whispers.
const aliceHere = new Inbox('alice here');
const aliceJoining = new Inbox('alice joining');
const aliceLeaving = new Inbox('alice leaving');
const aliceTyping = new Inbox('alice typing');
const bobHere = new Inbox('bob here');
const bobTyping = new Inbox('bob typing');
alice.join('chat').here(aliceHere.push).joining(aliceJoining.push).leaving(aliceLeaving.push).listenForWhisper('typing', aliceTyping.push);
assert.deepEqual(await aliceHere.next(), [{ name: 'ALICE' }]);
const bobChat = bob.join('chat').here(bobHere.push).listenForWhisper('typing', bobTyping.push);
let here = await bobHere.next();
here.sort((a, b) => a.name.localeCompare(b.name));
assert.deepEqual(here, [{ name: 'ALICE' }, { name: 'BOB' }]);
assert.deepEqual(await aliceJoining.next(), { name: 'BOB' });
ok('presence here and joining');

bobChat.whisper('typing', { name: 'bob' });
assert.deepEqual(await aliceTyping.next(), { name: 'bob' });
alice.join('chat').whisper('typing', { name: 'alice' });
assert.deepEqual(await bobTyping.next(), { name: 'alice' });
ok('whisper and listenForWhisper');

// The server SDK.
const server = sdk(nodeA);
await server.trigger('news', 'Posted', { id: 1 });
assert.deepEqual(await news.alice.next(), { id: 1 });
assert.deepEqual(await news.bob.next(), { id: 1 });
await server.trigger('news', 'App\\Events\\OrderShipped', { order: 7 });
assert.deepEqual(await shipped.next(), { order: 7 });
ok('trigger');

await server.trigger(['news', 'private-orders.1'], 'Updated', { id: 2 });
assert.deepEqual(await orders.next(), { id: 2 });
await server.trigger(['news', 'private-orders.1'], 'Posted', { id: 3 });
assert.deepEqual(await news.alice.next(), { id: 3 });
assert.deepEqual(await news.bob.next(), { id: 3 });
ok('trigger on several channels');

// toOthers(): alice's socket is excluded; the next event reaches her, so
// the excluded one never came.
await server.trigger('news', 'Posted', { id: 4 }, { socket_id: alice.socketId() });
assert.deepEqual(await news.bob.next(), { id: 4 });
await server.trigger('news', 'Posted', { id: 5 });
assert.deepEqual(await news.alice.next(), { id: 5 });
assert.deepEqual(await news.bob.next(), { id: 5 });
ok('trigger with socket_id exclusion');

await server.triggerBatch([
  { channel: 'news', name: 'Posted', data: { id: 6 } },
  { channel: 'private-orders.1', name: 'Updated', data: { id: 7 } },
]);
assert.deepEqual(await news.alice.next(), { id: 6 });
assert.deepEqual(await news.bob.next(), { id: 6 });
assert.deepEqual(await orders.next(), { id: 7 });
ok('triggerBatch');

const users = await (await server.get({ path: '/channels/presence-chat/users' })).json();
users.users.sort((a, b) => a.id.localeCompare(b.id));
assert.deepEqual(users, { users: [{ id: 'alice' }, { id: 'bob' }] });
ok('get /channels/{name}/users');

const list = await (await server.get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } })).json();
assert.deepEqual(list, { channels: { 'presence-chat': { user_count: 2 } } });
const all = await (await server.get({ path: '/channels' })).json();
assert.deepEqual(Object.keys(all.channels).sort(), ['news', 'presence-chat', 'private-orders.1']);
const info = await (await server.get({ path: '/channels/presence-chat', params: { info: 'user_count,subscription_count' } })).json();
assert.deepEqual(info, { occupied: true, user_count: 2, subscription_count: 2 });
const empty = await (await server.get({ path: '/channels/nobody-here' })).json();
assert.deepEqual(empty, { occupied: false });
ok('get /channels and /channels/{name}');

// A wrong secret is refused.
assert.equal(await status(sdk(nodeA, 'wrong-secret').trigger('news', 'Posted', { id: 0 })), 401);
ok('wrong secret: 401');

// User authentication with the SDK's authenticateUser, then a message to
// the user.
const carol = new Pusher(app.key, {
  cluster: 'mt1', wsHost: nodeB.split(':')[0], wsPort: Number(nodeB.split(':')[1]), forceTLS: false, enabledTransports: ['ws'],
  userAuthentication: { customHandler: ({ socketId }, cb) => cb(null, server.authenticateUser(socketId, { id: 'carol', user_info: { name: 'Carol' } })) },
});
const notes = new Inbox('carol notes');
carol.user.bind('note', notes.push);
carol.signin();
await carol.user.signinDonePromise;
assert.equal(carol.user.user_data.id, 'carol');
await until('carol subscribed to her user channel', () => carol.user.serverToUserChannel && carol.user.serverToUserChannel.subscribed);
await server.sendToUser('carol', 'note', { hi: 'carol' });
assert.deepEqual(await notes.next(), { hi: 'carol' });
ok('authenticateUser, signin and sendToUser');

// A channel authorized by the SDK's authorizeChannel, as a Laravel or Node
// backend would do it.
const dave = new Pusher(app.key, {
  cluster: 'mt1', wsHost: nodeA.split(':')[0], wsPort: Number(nodeA.split(':')[1]), forceTLS: false, enabledTransports: ['ws'],
  channelAuthorization: {
    customHandler: ({ socketId, channelName }, cb) =>
      cb(null, server.authorizeChannel(socketId, channelName, { user_id: 42, user_info: { name: 'DAVE' } })),
  },
});
const daveChat = dave.subscribe('presence-chat');
const daveOk = new Inbox('dave subscribed');
daveChat.bind('pusher:subscription_succeeded', daveOk.push);
const members = await daveOk.next();
assert.equal(members.count, 3);
assert.deepEqual(members.me, { id: 42, info: { name: 'DAVE' } });
assert.deepEqual(await aliceJoining.next(), { name: 'DAVE' });
dave.disconnect();
assert.deepEqual(await aliceLeaving.next(), { name: 'DAVE' });
ok('authorizeChannel from the SDK');

// bob signs in through Echo (the Go server's UserAuthHandler): his
// connection is his from now on, for terminateUserConnections.
bob.connector.signin();
await bob.connector.pusher.user.signinDonePromise;
assert.equal(bob.connector.pusher.user.user_data.id, 'bob');
ok('Echo signin');

const closed = new Inbox('bob disconnected');
bob.connector.pusher.connection.bind('state_change', (s) => s.current !== 'connected' && closed.push(s.current));
await server.terminateUserConnections('bob');
await closed.next();
assert.deepEqual(await aliceLeaving.next(), { name: 'BOB' });
ok('terminateUserConnections');

alice.disconnect();
carol.disconnect();
bob.disconnect();
news.alice.empty();
news.bob.empty();
console.log('done');
process.exit(0);
