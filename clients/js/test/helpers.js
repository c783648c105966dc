// Shared by the tests: the Go test server, clients on it, and waiting
// on events with a timeout (never on sleeps).

import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import WebSocket from 'ws';

import { connect } from '../src/index.js';

const repoRoot = fileURLToPath(new URL('../../..', import.meta.url));

let built; // promise of the test server binary's path, once per process

/**
 * The test server binary: $WS_TESTSERVER_BIN when set (the Go test builds
 * it once for every test file), else built here with go build.
 */
function testServerBinary() {
  if (process.env.WS_TESTSERVER_BIN) return Promise.resolve(process.env.WS_TESTSERVER_BIN);
  built ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ws-js-testserver-'));
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    const bin = join(dir, 'testserver');
    await promisify(execFile)('go', ['build', '-o', bin, './clients/js/testserver'], { cwd: repoRoot, timeout: 180_000 });
    return bin;
  })();
  return built;
}

/**
 * Starts the Go test server for test t and stops it when t ends.
 * @returns {Promise<TestServer>}
 */
export async function startServer(t, { queue } = {}) {
  const bin = await testServerBinary();
  const args = queue ? ['-queue', String(queue)] : [];
  const proc = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let logs = '';
  proc.stderr.on('data', (b) => (logs += b));
  const exited = new Promise((resolve) => proc.on('exit', resolve));
  const line = await withTimeout(
    new Promise((resolve, reject) => {
      createInterface({ input: proc.stdout }).once('line', resolve);
      proc.once('exit', (code) => reject(new Error(`testserver exited (${code}) before it listened:\n${logs}`)));
    }),
    20_000,
    'testserver did not print its addresses',
  );
  const m = /^ws=(\S+) control=(\S+)$/.exec(line);
  if (!m) throw new Error(`testserver printed ${JSON.stringify(line)}`);
  const server = new TestServer(m[1], m[2]);
  t.after(async () => {
    proc.stdin.end(); // the server shuts down when its stdin closes
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  });
  return server;
}

/** The running Go test server: its WebSocket URL and its control routes. */
export class TestServer {
  constructor(wsAddr, controlAddr) {
    this.url = `ws://${wsAddr}/ws`;
    this.control = `http://${controlAddr}`;
  }

  async call(method, path, body) {
    const res = await fetch(this.control + path, {
      method,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
    return res.status === 204 ? undefined : res.json();
  }

  publish(channel, message) {
    return this.call('POST', `/publish?channel=${encodeURIComponent(channel)}`, message);
  }

  /** hub.PresenceMembers: [{id, info}] ordered by id. */
  presence(channel) {
    return this.call('GET', `/presence?channel=${encodeURIComponent(channel)}`);
  }

  closeClients(code, reason = '', user = '') {
    return this.call('POST', `/close?code=${code}&reason=${encodeURIComponent(reason)}&user=${encodeURIComponent(user)}`);
  }

  drop(user = '') {
    return this.call('POST', `/drop?user=${encodeURIComponent(user)}`);
  }

  stall(user = '') {
    return this.call('POST', `/stall?user=${encodeURIComponent(user)}`);
  }

  slow(user) {
    return this.call('POST', `/slow?user=${encodeURIComponent(user)}`);
  }

  stop() {
    return this.call('POST', '/stop');
  }

  start() {
    return this.call('POST', '/start');
  }
}

/**
 * Fast reconnects for tests. Test clients use the "ws" package, or with
 * WS_TEST_WEBSOCKET=global the runtime's own WebSocket (Node 22 and
 * later, as in a browser).
 */
export const testOptions = {
  WebSocket: process.env.WS_TEST_WEBSOCKET === 'global' ? undefined : WebSocket,
  minReconnectDelay: 20,
  maxReconnectDelay: 200,
};

/**
 * Connects a client as user (?user=) to server, closed when t ends, and
 * records every event it emits in client.events.
 */
export function newClient(t, server, user, options = {}) {
  const params = user ? { user } : undefined;
  const client = connect(server.url, { ...testOptions, params, ...options });
  t.after(() => client.close());
  return client;
}

/**
 * Resolves with the arguments of the next emission of event on emitter
 * for which accept(...args) is true; rejects after timeout ms.
 */
export function next(emitter, event, { accept = () => true, timeout = 10_000 } = {}) {
  return new Promise((resolve, reject) => {
    const listener = (...args) => {
      if (!accept(...args)) return;
      clearTimeout(timer);
      emitter.off(event, listener);
      resolve(args);
    };
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Error(`no "${event}" event within ${timeout} ms`));
    }, timeout);
    emitter.on(event, listener);
  });
}

/** Records every emission of events on emitter, as [event, ...args]. */
export function record(emitter, events) {
  const log = [];
  for (const event of events) emitter.on(event, (...args) => log.push([event, ...args]));
  return log;
}

/** Resolves once the client is connected (at once if it is). */
export function connected(client, timeout = 10_000) {
  if (client.state === 'connected') return Promise.resolve();
  return next(client, 'connected', { timeout });
}

/**
 * Resolves once the server has registered the client's connection (its
 * OnConnect ran), which the socket's open event does not promise: the
 * upgrade is answered first. A subscribe confirmed proves it.
 */
export async function registered(client, timeout = 10_000) {
  await connected(client, timeout);
  await subscribed(client.subscribe('registered'), timeout);
}

/** Resolves once sub is subscribed (at once if it is). */
export function subscribed(sub, timeout = 10_000) {
  if (sub.state === 'subscribed') return Promise.resolve();
  return next(sub, 'subscribed', { timeout });
}

/**
 * Polls check (sync or async) every interval ms until it returns true;
 * rejects with the last describe() after timeout ms.
 */
export async function eventually(check, { timeout = 10_000, interval = 20, describe = () => '' } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeout} ms ${await describe()}`);
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

/**
 * Replaces setTimeout and clearTimeout with a fake clock for the rest of
 * test t (or until reset()), so that a test can run whatever a client
 * scheduled instead of waiting for it: an absence check ("it does not
 * reconnect") then needs no wall-clock wait.
 *
 * tick(ms) moves the clock ms ahead, running every timer due by then in
 * order of due time (a timer a callback sets runs too if it is due);
 * runAll() ticks to the latest timer pending when it is called. A timer
 * set before the fake clock is real: clearTimeout still clears it.
 *
 * A fake timer has the methods of node's (ref, unref, hasRef, refresh):
 * node's own fetch (undici), which the tests' control calls use, calls
 * unref on the timers it sets while the clock is fake.
 *
 * This is not node's MockTimers: on Node 18 its clearTimeout removes the
 * timer at the queue position equal to the handle's id, often another
 * one or none (nodejs/node#50365; Node 20.20, 22 and 24 do not have it),
 * and a reconnect the client had cancelled then ran anyway.
 */
export function mockTimeouts(t) {
  const real = { setTimeout: globalThis.setTimeout, clearTimeout: globalThis.clearTimeout };
  const pending = new Set();
  let seq = 0;
  const clock = {
    now: 0,
    tick(ms) {
      const until = clock.now + ms;
      for (;;) {
        let first = null;
        for (const timer of pending) {
          if (timer.due <= until && (!first || timer.due < first.due || (timer.due === first.due && timer.seq < first.seq))) first = timer;
        }
        if (!first) break;
        pending.delete(first);
        clock.now = first.due;
        first.fn(...first.args);
      }
      clock.now = until;
    },
    runAll() {
      let last = clock.now;
      for (const timer of pending) last = Math.max(last, timer.due);
      clock.tick(last - clock.now);
    },
    reset() {
      globalThis.setTimeout = real.setTimeout;
      globalThis.clearTimeout = real.clearTimeout;
      pending.clear();
    },
  };
  class FakeTimeout {
    constructor(fn, ms, args) {
      this.fn = fn;
      this.args = args;
      this.ms = Math.max(1, Number(ms) || 0); // as node: 0 and NaN mean 1
      this.arm();
    }
    arm() {
      this.seq = ++seq;
      this.due = clock.now + this.ms;
      pending.add(this);
    }
    refresh() {
      pending.delete(this);
      this.arm();
      return this;
    }
    ref() {
      return this;
    }
    unref() {
      return this;
    }
    hasRef() {
      return true;
    }
    [Symbol.toPrimitive]() {
      return this.seq;
    }
  }
  globalThis.setTimeout = (fn, ms, ...args) => new FakeTimeout(fn, ms, args);
  globalThis.clearTimeout = (timer) => {
    if (timer instanceof FakeTimeout) pending.delete(timer);
    else real.clearTimeout(timer);
  };
  t.after(() => clock.reset());
  return clock;
}

/**
 * mockTimeouts with Date.now() reading the fake clock: 0 at first, a
 * timer's due time while its callback runs, and ms later after tick(ms).
 */
export function mockClock(t) {
  const clock = mockTimeouts(t);
  const realNow = Date.now;
  Date.now = () => clock.now;
  t.after(() => {
    Date.now = realNow;
  });
  return clock;
}

/** Rejects with message if promise has not settled within ms. */
export function withTimeout(promise, ms, message) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${message} within ${ms} ms`)), ms);
    }),
  ]);
}
