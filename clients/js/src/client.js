// The connection: one WebSocket at a time, replaced after every loss.
//
// States and who moves them (all on the event loop; every socket event
// is checked against the current socket, so a late event from a replaced
// socket changes nothing):
//
//   from          to            when
//   connecting    connected     the socket opened: subscriptions are replayed
//   connecting    connecting    the attempt failed (URL, handshake, connect timeout):
//                               next attempt after a backoff
//   connected     connecting    the socket closed with a code the reconnect policy retries,
//                               or keepalive found it dead: next attempt after a backoff
//   connecting/   disconnected  close(), or a close code the policy does not retry,
//   connected                   or reconnect: false
//   disconnected  connecting    connect()
//
// "connecting" covers both an attempt in flight and the wait before the
// next one; "disconnected" means no attempt will be made until connect().

import { Emitter } from './emitter.js';
import { WsError } from './errors.js';
import { backoffDelay, defaultShouldReconnect } from './reconnect.js';
import { Subscription } from './subscription.js';

const defaults = {
  params: undefined,
  token: undefined,
  tokenParam: 'token',
  WebSocket: undefined,
  reconnect: true,
  minReconnectDelay: 500,
  maxReconnectDelay: 20000,
  shouldReconnect: defaultShouldReconnect,
  connectTimeout: 10000,
  pingInterval: 25000,
  pongTimeout: 10000,
};

/** A connection that stayed open this long resets the backoff. */
const stableAfter = 5000;

const OPEN = 1;
const noop = () => {};

export class Client extends Emitter {
  #url;
  #WebSocket;
  #state = 'disconnected';
  #socket = null; // the current socket, or null
  #attempt = 0; // bumped by every attempt and by close(): stale async work checks it
  #failures = 0; // consecutive attempts without a stable connection
  #openedAt = 0;
  #reconnectTimer = null;
  #connectTimer = null;
  #keepaliveTimer = null;
  #lastFrameAt = 0;
  #pingSentAt = 0; // when the unanswered ping went out; 0 if none
  #errorDetail = ''; // what the current socket's error event said
  #subs = new Map(); // channel -> Subscription

  /** @internal Use connect(url, options). */
  constructor(url, options = {}) {
    super();
    if (typeof url !== 'string' && !(url instanceof URL) && typeof url !== 'function') {
      throw new TypeError('url must be a string, a URL or a function returning one');
    }
    this.#url = url;
    /** @internal */
    this._options = { ...defaults, ...options };
    const WS = this._options.WebSocket || globalThis.WebSocket;
    if (typeof WS !== 'function') {
      throw new TypeError('no WebSocket: this runtime has no global WebSocket; pass one, e.g. connect(url, {WebSocket}) with WebSocket from the "ws" package');
    }
    this.#WebSocket = WS;
  }

  /** 'connecting', 'connected' or 'disconnected'. */
  get state() {
    return this.#state;
  }

  /**
   * Subscribes to channel, or returns the subscription that already
   * follows it. options.since ({offset, epoch}, from sub.position)
   * resumes a history channel where an earlier page left it.
   * @returns {Subscription}
   */
  subscribe(channel, options = {}) {
    if (typeof channel !== 'string' || channel === '') {
      throw new TypeError('channel must be a non-empty string');
    }
    let sub = this.#subs.get(channel);
    if (sub) return sub;
    sub = new Subscription(this, channel, options);
    this.#subs.set(channel, sub);
    sub._send();
    return sub;
  }

  /** The subscription that follows channel, or undefined. */
  subscription(channel) {
    return this.#subs.get(channel);
  }

  /** Every subscription the client keeps (subscribing or subscribed). */
  subscriptions() {
    return [...this.#subs.values()];
  }

  /** Leaves channel; the same as client.subscription(channel)?.unsubscribe(). */
  unsubscribe(channel) {
    this.#subs.get(channel)?.unsubscribe();
  }

  /**
   * Connects again after close() or a close the policy does not retry;
   * while waiting to reconnect, tries now. Subscriptions are kept.
   */
  connect() {
    if (this.#state === 'connected') return this;
    if (this.#state === 'connecting' && this.#reconnectTimer === null) return this; // attempt in flight
    this.#clearReconnect();
    this.#open();
    return this;
  }

  /**
   * Closes the connection with a close frame (code 1000 unless given) and
   * stops reconnecting. Subscriptions are kept and replayed by connect().
   */
  close(code = 1000, reason = '') {
    this.#attempt++;
    this.#failures = 0; // connect() starts afresh
    this.#clearReconnect();
    const socket = this.#socket;
    if (socket) {
      this.#teardown();
      try {
        socket.close(code, reason);
      } catch {
        // an invalid code or reason: close without them
        try {
          socket.close();
        } catch {
          // closed already
        }
      }
    }
    for (const sub of this.#subs.values()) sub._disconnected();
    if (this.#state !== 'disconnected') {
      this.#setState('disconnected');
      this._emit('disconnected', { code, reason, willReconnect: false });
    }
  }

  // --- used by subscriptions ---

  /** @internal Sends one frame if connected; reports whether it was sent. */
  _send(frame) {
    if (!this._isOpen()) return false;
    this.#socket.send(JSON.stringify(frame));
    return true;
  }

  /** @internal */
  _isOpen() {
    return this.#state === 'connected' && this.#socket !== null && this.#socket.readyState === OPEN;
  }

  /** @internal sub follows its channel again (sub.subscribe()). */
  _adopt(sub) {
    const current = this.#subs.get(sub.channel);
    if (current && current !== sub) {
      throw new Error(`${sub.channel} is followed by another Subscription; use client.subscription(channel)`);
    }
    this.#subs.set(sub.channel, sub);
  }

  /** @internal sub no longer follows its channel. */
  _release(sub) {
    if (this.#subs.get(sub.channel) === sub) this.#subs.delete(sub.channel);
  }

  // --- the connection ---

  async #open() {
    const attempt = ++this.#attempt;
    this.#setState('connecting');
    let url;
    try {
      url = await this.#resolveURL();
    } catch (err) {
      if (attempt !== this.#attempt) return;
      const failure = new WsError('url_failed', `could not build the connection URL: ${err?.message ?? err}`, { cause: err });
      this.#retry({ code: 1006, reason: 'url failed' }, false, failure);
      return;
    }
    if (attempt !== this.#attempt) return; // closed or restarted meanwhile
    let socket;
    try {
      socket = new this.#WebSocket(url);
    } catch (err) {
      const failure = new WsError('connect_failed', `cannot open ${url}: ${err?.message ?? err}`, { cause: err });
      this.#retry({ code: 1006, reason: 'WebSocket constructor failed' }, false, failure);
      return;
    }
    this.#socket = socket;
    this.#errorDetail = '';
    socket.onopen = () => socket === this.#socket && this.#opened();
    socket.onmessage = (ev) => socket === this.#socket && this.#received(ev.data);
    socket.onclose = (ev) => socket === this.#socket && this.#closed(ev.code, ev.reason || '');
    socket.onerror = (ev) => socket === this.#socket && this.#errored(ev);
    this.#connectTimer = setTimeout(() => {
      if (socket !== this.#socket) return;
      this.#abandon('connect timeout');
    }, this._options.connectTimeout);
  }

  async #resolveURL() {
    const o = this._options;
    let base = typeof this.#url === 'function' ? await this.#url() : this.#url;
    const u = new URL(String(base), globalThis.location?.href);
    if (u.protocol === 'http:') u.protocol = 'ws:';
    if (u.protocol === 'https:') u.protocol = 'wss:';
    const params = typeof o.params === 'function' ? await o.params() : o.params;
    for (const [k, v] of Object.entries(params || {})) {
      if (v !== undefined && v !== null) u.searchParams.set(k, String(v));
    }
    const token = typeof o.token === 'function' ? await o.token() : o.token;
    if (token !== undefined && token !== null && token !== '') u.searchParams.set(o.tokenParam, String(token));
    return u.toString();
  }

  #opened() {
    clearTimeout(this.#connectTimer);
    this.#connectTimer = null;
    this.#openedAt = Date.now();
    this.#state = 'connected'; // before replay, so subscriptions can send
    for (const sub of this.#subs.values()) sub._send();
    this.#startKeepalive();
    this._emit('state', 'connected', 'connecting');
    this._emit('connected');
  }

  #received(data) {
    this.#lastFrameAt = Date.now();
    if (this.#pingSentAt !== 0) {
      // Alive: the ping is answered by this frame, whatever it is.
      this.#pingSentAt = 0;
      clearTimeout(this.#keepaliveTimer);
      this.#scheduleKeepalive(this._options.pingInterval);
    }
    let f;
    try {
      f = JSON.parse(typeof data === 'string' ? data : String(data));
    } catch (err) {
      this._emit('error', new WsError('bad_frame', `the server sent a frame that is not JSON: ${err.message}`, { cause: err }));
      return;
    }
    if (f === null || typeof f !== 'object') return;
    this._emit('frame', f);
    const sub = typeof f.channel === 'string' ? this.#subs.get(f.channel) : undefined;
    if (f.type === 'error') {
      if (sub && (f.action === 'subscribe' || f.action === 'whisper')) sub._frame(f);
      else if (!(f.action === 'unsubscribe' && f.code === 'not_subscribed')) this._emit('error', WsError.fromFrame(f));
      return;
    }
    if (sub) sub._frame(f);
  }

  #errored(ev) {
    // The close event follows with the code that decides what happens
    // next; a browser says nothing more than "error", the "ws" package
    // says why (e.g. "Unexpected server response: 503").
    this.#errorDetail = ev?.message || ev?.error?.message || '';
    if (this.#state === 'connected') return;
    // An attempt that fails before it opens fires error, then close with
    // 1006, in the same task. Node 22's own WebSocket fires no close
    // after a refused connection or a non-101 answer and stays
    // CONNECTING, so the attempt would wait out connectTimeout: if no
    // close has come once this event is handled, the attempt failed.
    const socket = this.#socket;
    queueMicrotask(() => {
      if (socket !== this.#socket || this.#state === 'connected') return;
      this.#abandon('');
    });
  }

  #closed(code, reason) {
    const wasConnected = this.#state === 'connected';
    const detail = this.#errorDetail;
    this.#teardown();
    for (const sub of this.#subs.values()) sub._disconnected();
    if (wasConnected && Date.now() - this.#openedAt >= stableAfter) this.#failures = 0;
    let failure = null;
    if (!wasConnected) {
      const why = [reason, detail].filter(Boolean).join('; ');
      failure = new WsError('connect_failed', `the connection failed before it opened (code ${code}${why ? ': ' + why : ''})`);
    }
    this.#retry({ code, reason }, wasConnected, failure);
  }

  /**
   * Decides whether to try again after a close or a failed attempt,
   * reporting failure (an attempt that never opened) on 'error'.
   */
  #retry(close, wasConnected, failure) {
    const o = this._options;
    let willReconnect = false;
    if (o.reconnect) {
      try {
        willReconnect = !!o.shouldReconnect(close);
      } catch (err) {
        setTimeout(() => {
          throw err;
        }, 0);
      }
    }
    if (!willReconnect) {
      this.#setState('disconnected');
      if (failure) this._emit('error', failure);
      this._emit('disconnected', { ...close, willReconnect });
      return;
    }
    // The timer is set before any listener runs, so a listener that calls
    // close() or connect() has the last word.
    const delay = backoffDelay(this.#failures++, o.minReconnectDelay, o.maxReconnectDelay);
    const attempt = this.#failures;
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = null;
      this.#open();
    }, delay);
    const generation = this.#attempt;
    const current = () => generation === this.#attempt && this.#reconnectTimer !== null;
    this.#setState('connecting');
    if (failure && current()) this._emit('error', failure);
    if (wasConnected && current()) this._emit('disconnected', { ...close, willReconnect });
    if (current()) this._emit('reconnecting', { attempt, delay });
  }

  /** Forgets the current socket and its timers; its later events are ignored. */
  #teardown() {
    const socket = this.#socket;
    this.#socket = null;
    clearTimeout(this.#connectTimer);
    clearTimeout(this.#keepaliveTimer);
    this.#connectTimer = this.#keepaliveTimer = null;
    this.#pingSentAt = 0;
    if (socket) {
      // Not null: the "ws" package throws an "error" that has no listener.
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = noop;
    }
  }

  /**
   * Drops the current socket without a close handshake (dead, stuck, or
   * failed with no close event to come) and goes on as after a close
   * with 1006 and reason.
   */
  #abandon(reason) {
    const socket = this.#socket;
    if (!socket) return;
    this.#teardown();
    try {
      if (typeof socket.terminate === 'function') socket.terminate();
      else socket.close();
    } catch {
      // already closed
    }
    this.#closed(1006, reason);
  }

  #clearReconnect() {
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
  }

  // --- keepalive ---
  //
  // Browsers answer the server's WebSocket pings without telling the
  // page, so the page cannot see a dead connection that way. When
  // nothing has arrived for pingInterval we send {"action":"ping"}; if
  // still nothing (not the pong, not any frame) arrives within
  // pongTimeout, the connection is dead: dropped and replaced. A busy
  // connection sends no pings: a frame only records its time, and
  // reschedules the timer only when it answers a ping.

  #startKeepalive() {
    this.#lastFrameAt = Date.now();
    this.#pingSentAt = 0;
    if (this._options.pingInterval > 0) this.#scheduleKeepalive(this._options.pingInterval);
  }

  #scheduleKeepalive(ms) {
    const socket = this.#socket;
    this.#keepaliveTimer = setTimeout(() => socket === this.#socket && this.#keepalive(), Math.max(ms, 1));
  }

  #keepalive() {
    const { pingInterval, pongTimeout } = this._options;
    const now = Date.now();
    if (this.#pingSentAt !== 0) {
      // Nothing has arrived since the ping.
      if (now - this.#pingSentAt >= pongTimeout) {
        this.#abandon('keepalive timeout');
        return;
      }
      this.#scheduleKeepalive(this.#pingSentAt + pongTimeout - now);
      return;
    }
    const idle = now - this.#lastFrameAt;
    if (idle < pingInterval) {
      this.#scheduleKeepalive(pingInterval - idle);
      return;
    }
    this.#pingSentAt = now;
    this._send({ action: 'ping' });
    this.#scheduleKeepalive(pongTimeout);
  }

  #setState(state) {
    const old = this.#state;
    if (old === state) return;
    this.#state = state;
    this._emit('state', state, old);
  }
}

/**
 * connect opens a client to url: a string, a URL, or a function
 * returning one (or a promise of one), called before every attempt.
 * See the README for the options.
 * @returns {Client}
 */
export function connect(url, options = {}) {
  const client = new Client(url, options);
  client.connect();
  return client;
}
