// One channel the application follows, across every connection the
// client makes.
//
// States and who moves them (all on the client's event loop):
//
//   from          to            when
//   subscribing   subscribed    the server's "subscribed" frame
//   subscribed    subscribing   the connection ended (replayed on the next one), the server
//                               undid the subscription ("unsubscribed", error "unavailable")
//   subscribing   subscribing   error "unavailable" / "rate_limited": retried after a backoff
//   any           unsubscribed  unsubscribe(), or a refusal (unauthorized, invalid_channel, ...)
//   unsubscribed  subscribing   subscribe()
//
// A subscription in "subscribing" is (re)sent whenever the client
// connects. On history channels it asks for what it missed with
// "since", from the last offset it delivered.

import { Emitter } from './emitter.js';
import { WsError } from './errors.js';
import { Presence } from './presence.js';
import { backoffDelay } from './reconnect.js';

/** Error codes after which a subscribe is tried again by itself. */
const retryCodes = new Set(['unavailable', 'rate_limited']);

export class Subscription extends Emitter {
  #client;
  #channel;
  #state = 'subscribing';
  #everSubscribed = false;
  /**
   * Where a history channel's subscription stands: the offset up to which
   * it has everything (the last message delivered, or the channel's latest
   * at subscribe time) and the history's epoch. Sent as since.
   * @type {{offset: number, epoch: string} | null}
   */
  #position = null;
  /**
   * Messages at or below this offset were delivered already (or came
   * before the position a fresh subscribe started from) and are dropped;
   * null on channels without history.
   * @type {number | null}
   */
  #floor = null;
  #sentSince = false; // the subscribe in flight carried since
  #presence = new Presence();
  #named = new Emitter(); // message listeners by event name (listen)
  #whispers = new Emitter(); // whisper listeners by event name (listenForWhisper)
  #retryTimer = null;
  #retries = 0;

  /** @internal Use client.subscribe(channel). */
  constructor(client, channel, options = {}) {
    super();
    this.#client = client;
    this.#channel = channel;
    const since = options.since;
    if (since != null) {
      if (typeof since.offset !== 'number' || typeof since.epoch !== 'string') {
        throw new TypeError('since must be {offset: number, epoch: string}, as sub.position gives it');
      }
      this.#position = { offset: since.offset, epoch: since.epoch };
      this.#floor = since.offset;
    }
  }

  /** The channel name. */
  get channel() {
    return this.#channel;
  }

  /** 'subscribing', 'subscribed' or 'unsubscribed'. */
  get state() {
    return this.#state;
  }

  /** Whether the channel is a presence channel (its name starts with presence-). */
  get isPresence() {
    return this.#channel.startsWith('presence-');
  }

  /**
   * The channel's members, id -> info, on presence channels: the same Map
   * for the subscription's life, reset by every full list from the server.
   * @returns {Map<string, unknown>}
   */
  get members() {
    return this.#presence.members;
  }

  /**
   * Where the subscription stands on a history channel, {offset, epoch}:
   * the offset of the last message delivered (or the channel's latest
   * when it subscribed), or null on other channels. Store it to resume after a page reload:
   * client.subscribe(channel, {since: position}).
   */
  get position() {
    return this.#position ? { ...this.#position } : null;
  }

  /** Subscribes again after unsubscribe() or a refusal. Returns this. */
  subscribe() {
    if (this.#state !== 'unsubscribed') return this;
    this.#client._adopt(this);
    this.#setState('subscribing');
    this._send();
    return this;
  }

  /** Leaves the channel. Nothing more is emitted for it until subscribe(). */
  unsubscribe() {
    if (this.#state === 'unsubscribed') return;
    this.#clearRetry();
    this.#client._release(this);
    this.#presence.clear();
    this.#setState('unsubscribed');
    this.#client._send({ action: 'unsubscribe', channel: this.#channel });
  }

  /**
   * Sends a whisper to the channel's other subscribers. Returns false,
   * and emits 'error' (not_connected, not_subscribed), when it cannot be
   * sent now: whispers are never queued, so a stale typing indicator is
   * not delivered after a reconnect.
   */
  whisper(event, data) {
    if (!this.#client._isOpen()) {
      this.#fail(new WsError('not_connected', `cannot whisper on ${this.#channel}: not connected; whispers are not queued`, { action: 'whisper', channel: this.#channel }));
      return false;
    }
    if (this.#state !== 'subscribed') {
      this.#fail(new WsError('not_subscribed', `cannot whisper on ${this.#channel}: the subscription is ${this.#state}`, { action: 'whisper', channel: this.#channel }));
      return false;
    }
    return this.#client._send({ action: 'whisper', channel: this.#channel, event, data: data === undefined ? null : data });
  }

  /** Calls listener(message, meta) for messages published with this event name. */
  listen(event, listener) {
    this.#named.on(event, listener);
    return this;
  }

  /** Removes a listener added with listen. */
  stopListening(event, listener) {
    this.#named.off(event, listener);
    return this;
  }

  /** Calls listener(data, from) for whispers with this event name. */
  listenForWhisper(event, listener) {
    this.#whispers.on(event, listener);
    return this;
  }

  /** Removes a listener added with listenForWhisper. */
  stopListeningForWhisper(event, listener) {
    this.#whispers.off(event, listener);
    return this;
  }

  /**
   * Calls listener(members) with the full member list, [{id, info}], now
   * if it is known and again on every list the server sends (after each
   * (re)subscribe): treat each call as a reset.
   */
  here(listener) {
    this.on('here', listener);
    if (this.#presence.known) listener.call(this, this.#presence.list());
    return this;
  }

  /** Calls listener(member) when a member joins. */
  joining(listener) {
    return this.on('joining', listener);
  }

  /** Calls listener(member) when a member leaves. */
  leaving(listener) {
    return this.on('leaving', listener);
  }

  // --- called by the client ---

  /** @internal Sends the subscribe frame if the client is connected. */
  _send() {
    this.#clearRetry();
    const frame = { action: 'subscribe', channel: this.#channel };
    if (this.#position) frame.since = { ...this.#position };
    if (this.#client._send(frame)) this.#sentSince = !!this.#position;
  }

  /** @internal The connection ended: the subscription waits for the next one. */
  _disconnected() {
    this.#clearRetry();
    if (this.#state === 'subscribed') this.#setState('subscribing');
  }

  /** @internal One server frame for this channel. */
  _frame(f) {
    switch (f.type) {
      case 'subscribed':
        this.#subscribed(f);
        break;
      case 'message':
        this.#message(f);
        break;
      case 'presence':
        this.#presenceFrame(f);
        break;
      case 'whisper':
        this._emit('whisper', f.event, f.data, f.from);
        this.#whispers._emit(f.event, f.data, f.from);
        break;
      case 'unsubscribed':
        // Ours are answered after we left; one that arrives while
        // subscribed means the server undid the subscription.
        if (this.#state === 'subscribed') {
          this.#setState('subscribing');
          this.#retryLater();
        }
        break;
      case 'error':
        this.#error(f);
        break;
    }
  }

  #subscribed(f) {
    const sentSince = this.#sentSince;
    this.#sentSince = false;
    this.#retries = 0;
    // The server also sends "subscribed" by itself, with recovered:false,
    // when a history channel's history broke under a live subscription
    // (docs/protocol.md): that is a reset as well.
    const reportsRecovery = sentSince || (this.#state === 'subscribed' && f.recovered === false);
    const info = { resubscribed: this.#everSubscribed };
    let recovered = false;
    if (typeof f.epoch === 'string') {
      info.offset = typeof f.offset === 'number' ? f.offset : 0;
      info.epoch = f.epoch;
      if (reportsRecovery) info.recovered = recovered = f.recovered === true;
      // Recovered: the missed messages follow, from our own offset on,
      // and the floor stays. Otherwise we start from the channel's latest
      // offset: the server sends only the messages above it from then on,
      // and the floor keeps it so.
      if (!recovered) {
        this.#position = { offset: info.offset, epoch: f.epoch };
        this.#floor = info.offset;
      }
    } else if (sentSince) {
      info.recovered = false; // not a history channel (any more)
      this.#position = null;
      this.#floor = null;
    }
    this.#everSubscribed = true;
    this.#setState('subscribed');
    this._emit('subscribed', info);
    if (reportsRecovery) this._emit(recovered ? 'recovered' : 'reset', info);
  }

  #message(f) {
    const meta = { channel: this.#channel };
    if (f.event !== undefined) meta.event = f.event;
    if (typeof f.offset === 'number') {
      meta.offset = f.offset;
      if (this.#floor !== null && f.offset <= this.#floor) return; // delivered already
      this.#floor = f.offset;
      if (this.#position && f.offset > this.#position.offset) this.#position.offset = f.offset;
    }
    const message = f.message === undefined ? null : f.message;
    this._emit('message', message, meta);
    if (typeof f.event === 'string') this.#named._emit(f.event, message, meta);
  }

  #presenceFrame(f) {
    const change = this.#presence.apply(f);
    if (!change) return;
    if (change.kind === 'here') this._emit('here', change.members);
    else this._emit(change.kind, change.member);
  }

  #error(f) {
    const err = WsError.fromFrame(f);
    if (f.action === 'subscribe') {
      if (retryCodes.has(f.code)) {
        if (this.#state === 'subscribed') this.#setState('subscribing');
        this.#retryLater();
      } else {
        this.#clearRetry();
        this.#client._release(this);
        this.#presence.clear();
        this.#setState('unsubscribed');
      }
    }
    this.#fail(err);
  }

  /** Emits err on the subscription, or on the client when nobody listens here. */
  #fail(err) {
    if (this.hasListeners('error')) this._emit('error', err);
    else this.#client._emit('error', err);
  }

  #retryLater() {
    this.#clearRetry();
    const { minReconnectDelay, maxReconnectDelay } = this.#client._options;
    const delay = backoffDelay(this.#retries++, minReconnectDelay, maxReconnectDelay);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      if (this.#state === 'subscribing') this._send();
    }, delay);
  }

  #clearRetry() {
    if (this.#retryTimer !== null) {
      clearTimeout(this.#retryTimer);
      this.#retryTimer = null;
    }
  }

  #setState(state) {
    const old = this.#state;
    if (old === state) return;
    this.#state = state;
    this._emit('state', state, old);
  }
}
