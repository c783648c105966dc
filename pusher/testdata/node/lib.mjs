// Helpers for the acceptance scenarios that pusher/node_test.go runs: real
// Laravel Echo, pusher-js and pusher (the server SDK) against the Go server.
// Each scenario prints "ok <step>" per step it checked and exits 0, or
// prints the failure and exits 1.
import assert from 'node:assert/strict';
import Echo from 'laravel-echo';
import Pusher from 'pusher-js';
import PusherServer from 'pusher';

export { assert, Pusher, PusherServer };

export const app = { id: process.env.PUSHER_APP_ID, key: process.env.PUSHER_KEY, secret: process.env.PUSHER_SECRET };

// nodes are the servers, "host:port" each (PUSHER_NODES, comma-separated).
export const nodes = (process.env.PUSHER_NODES || '').split(',').filter(Boolean);

export function ok(step) { console.log('ok ' + step); }

process.on('unhandledRejection', (e) => { console.error('FAIL', e); process.exit(1); });
process.on('uncaughtException', (e) => { console.error('FAIL', e); process.exit(1); });
setTimeout(() => { console.error('FAIL: scenario timed out'); process.exit(1); }, Number(process.env.SCENARIO_TIMEOUT_MS || 60000)).unref();

// echo returns Laravel Echo connected to node as user (sent as the X-User
// header to the authorization endpoint, which the Go server reads).
export function echo(node, user, broadcaster = 'reverb') {
  const [host, port] = node.split(':');
  return new Echo({
    broadcaster,
    key: app.key,
    cluster: 'mt1',
    wsHost: host,
    wsPort: Number(port),
    wssPort: Number(port),
    forceTLS: false,
    enabledTransports: ['ws'],
    authEndpoint: `http://${node}/pusher/auth`,
    auth: { headers: { 'X-User': user } },
    userAuthentication: { endpoint: `http://${node}/pusher/user-auth`, headers: { 'X-User': user } },
    Pusher,
  });
}

// sdk returns the Node server SDK pointed at node.
export function sdk(node, secret = app.secret) {
  const [host, port] = node.split(':');
  return new PusherServer({ appId: app.id, key: app.key, secret, host, port, useTLS: false });
}

// connected resolves once e's connection is established.
export function connected(pusher) {
  return new Promise((resolve) => {
    if (pusher.connection.state === 'connected') return resolve(pusher.connection.socket_id);
    pusher.connection.bind('connected', () => resolve(pusher.connection.socket_id));
  });
}

// inbox collects values and lets a step wait for the next one.
export class Inbox {
  constructor(name) { this.name = name; this.items = []; this.waiters = []; }
  push = (v) => {
    const w = this.waiters.shift();
    if (w) w(v); else this.items.push(v);
  };
  next(ms = 10000) {
    if (this.items.length) return Promise.resolve(this.items.shift());
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${this.name}: nothing within ${ms}ms`)), ms);
      this.waiters.push((v) => { clearTimeout(t); resolve(v); });
    });
  }
  empty() { assert.deepEqual(this.items, [], `${this.name} got more than expected`); }
}

// until polls f until it returns true, for up to ms.
export async function until(what, f, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await f()) return;
    if (Date.now() > end) throw new Error(`not within ${ms}ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// status is the HTTP status of a failed SDK request.
export async function status(promise) {
  try {
    await promise;
    return 200;
  } catch (e) {
    if (e.status) return e.status;
    throw e;
  }
}
