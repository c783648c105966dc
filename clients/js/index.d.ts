// Types for @vortechron/go-ws-client (src/index.js). Hand-written; the
// README explains every member.

/** Any JSON value. */
export type JSONValue = null | boolean | number | string | JSONValue[] | { [key: string]: JSONValue };

/** A value, or a function returning it or a promise of it; functions are called before every attempt. */
export type Provider<T> = T | (() => T | Promise<T>);

/** The part of a WebSocket the client uses: the browser's and the "ws" package's both fit. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: any) => any) | null;
  onmessage: ((ev: any) => any) | null;
  onclose: ((ev: any) => any) | null;
  onerror: ((ev: any) => any) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket constructor: globalThis.WebSocket, or WebSocket from the "ws" package. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface CloseInfo {
  /** The close code (1006 when no close frame arrived). */
  code: number;
  reason: string;
}

export interface DisconnectedInfo extends CloseInfo {
  /** Whether the client will try again (after a backoff). */
  willReconnect: boolean;
}

export interface ReconnectingInfo {
  /** Consecutive attempts without a stable connection, from 1. */
  attempt: number;
  /** Milliseconds until the attempt. */
  delay: number;
}

export interface ClientOptions {
  /** Query parameters added to the URL, e.g. {user: 'alice'}. */
  params?: Provider<Record<string, string | number | boolean | null | undefined> | undefined>;
  /** A token added to the URL as ?token= (see tokenParam); a function is called before every attempt. */
  token?: Provider<string | null | undefined>;
  /** The query parameter name for token. Default 'token'. */
  tokenParam?: string;
  /** The WebSocket implementation. Default globalThis.WebSocket. */
  WebSocket?: WebSocketConstructor;
  /** Reconnect at all. Default true. */
  reconnect?: boolean;
  /** The first retry waits a random time up to this (ms); each next one up to twice as long. Default 500. */
  minReconnectDelay?: number;
  /** The cap on the wait between attempts (ms). Default 20000. */
  maxReconnectDelay?: number;
  /** Decides by close code whether to reconnect. Default defaultShouldReconnect. */
  shouldReconnect?: (close: CloseInfo) => boolean;
  /** An attempt that has not opened after this long (ms) is abandoned. Default 10000. */
  connectTimeout?: number;
  /** Send {"action":"ping"} after this long (ms) without a frame from the server; 0 disables. Default 25000. */
  pingInterval?: number;
  /** After a ping, a connection that receives nothing for this long (ms) is dead. Default 10000. */
  pongTimeout?: number;
}

export type ClientState = 'connecting' | 'connected' | 'disconnected';
export type SubscriptionState = 'subscribing' | 'subscribed' | 'unsubscribed';

/** A server frame, as parsed JSON. */
export interface Frame {
  type: string;
  channel?: string;
  [key: string]: unknown;
}

/** Every error the client and its subscriptions emit. */
export class WsError extends Error {
  name: 'WsError';
  /**
   * The server's error code (unauthorized, unavailable, whisper_invalid, ...)
   * or the client's own: connect_failed, url_failed, bad_frame, not_connected, not_subscribed.
   */
  code: string;
  /** The action the error answers (subscribe, whisper, ...), when known. */
  action?: string;
  /** The channel the error is about, when known. */
  channel?: string;
  constructor(code: string, message: string, details?: { action?: string; channel?: string; cause?: unknown });
}

interface ClientEvents {
  state: (state: ClientState, previous: ClientState) => void;
  connected: () => void;
  disconnected: (info: DisconnectedInfo) => void;
  reconnecting: (info: ReconnectingInfo) => void;
  error: (error: WsError) => void;
  frame: (frame: Frame) => void;
}

export class Client {
  /** Creates a client without connecting; connect() starts it. connect(url, options) does both. */
  constructor(url: Provider<string | URL>, options?: ClientOptions);
  /** 'connecting' (an attempt in flight or the wait before one), 'connected' or 'disconnected' (until connect()). */
  readonly state: ClientState;
  /** Follows channel, or returns the subscription that already does. since resumes a history channel. */
  subscribe<M = JSONValue>(channel: string, options?: SubscribeOptions): Subscription<M>;
  /** The subscription that follows channel, if any. */
  subscription<M = JSONValue>(channel: string): Subscription<M> | undefined;
  /** Every subscription kept (subscribing or subscribed). */
  subscriptions(): Subscription[];
  /** Leaves channel. */
  unsubscribe(channel: string): void;
  /** Connects again after close() or a close the policy does not retry; skips a pending backoff. */
  connect(): this;
  /** Closes with a close frame (default 1000) and stops reconnecting; subscriptions are kept for connect(). */
  close(code?: number, reason?: string): void;
  on<E extends keyof ClientEvents>(event: E, listener: ClientEvents[E]): this;
  once<E extends keyof ClientEvents>(event: E, listener: ClientEvents[E]): this;
  off<E extends keyof ClientEvents>(event: E, listener: ClientEvents[E]): this;
  hasListeners(event: keyof ClientEvents): boolean;
}

/** A position in a history channel, from sub.position. */
export interface Position {
  offset: number;
  epoch: string;
}

export interface SubscribeOptions {
  /** Resume a history channel after this position (e.g. one saved before a page reload). */
  since?: Position;
}

export interface SubscribedInfo {
  /** True for every subscribed after the first (after a reconnect): a channel without history may have missed messages. */
  resubscribed: boolean;
  /** History channels: the channel's latest offset. */
  offset?: number;
  /** History channels: the history's epoch. */
  epoch?: string;
  /** When the subscribe asked for since (or the server reset a history channel): whether every missed message follows. */
  recovered?: boolean;
}

export interface MessageMeta {
  channel: string;
  /** The publication's event name, when it has one. */
  event?: string;
  /** The publication's offset on history channels. */
  offset?: number;
}

export interface Member<I = JSONValue> {
  id: string;
  info?: I;
}

interface SubscriptionEvents<M> {
  state: (state: SubscriptionState, previous: SubscriptionState) => void;
  subscribed: (info: SubscribedInfo) => void;
  recovered: (info: SubscribedInfo) => void;
  reset: (info: SubscribedInfo) => void;
  message: (message: M, meta: MessageMeta) => void;
  whisper: (event: string, data: JSONValue, from: string) => void;
  here: (members: Member[]) => void;
  joining: (member: Member) => void;
  leaving: (member: Member) => void;
  error: (error: WsError) => void;
}

export class Subscription<M = JSONValue> {
  readonly channel: string;
  readonly state: SubscriptionState;
  /** Whether the name starts with presence-. */
  readonly isPresence: boolean;
  /** Presence channels: id -> info, one Map for the subscription's life. */
  readonly members: Map<string, JSONValue | undefined>;
  /** History channels: the position of the last message delivered, or null. */
  readonly position: Position | null;
  /** Subscribes again after unsubscribe() or a refusal. */
  subscribe(): this;
  unsubscribe(): void;
  /** Sends a whisper now, or returns false and emits 'error' (never queued). */
  whisper(event: string, data?: JSONValue): boolean;
  /** Messages published with this event name. */
  listen(event: string, listener: (message: M, meta: MessageMeta) => void): this;
  stopListening(event: string, listener: (message: M, meta: MessageMeta) => void): this;
  /** Whispers with this event name. */
  listenForWhisper(event: string, listener: (data: JSONValue, from: string) => void): this;
  stopListeningForWhisper(event: string, listener: (data: JSONValue, from: string) => void): this;
  /** The full member list: now if known, and again on every list from the server (each is a reset). */
  here(listener: (members: Member[]) => void): this;
  joining(listener: (member: Member) => void): this;
  leaving(listener: (member: Member) => void): this;
  on<E extends keyof SubscriptionEvents<M>>(event: E, listener: SubscriptionEvents<M>[E]): this;
  once<E extends keyof SubscriptionEvents<M>>(event: E, listener: SubscriptionEvents<M>[E]): this;
  off<E extends keyof SubscriptionEvents<M>>(event: E, listener: SubscriptionEvents<M>[E]): this;
  hasListeners(event: keyof SubscriptionEvents<M>): boolean;
}

/** Opens a client to url and starts connecting. */
export function connect(url: Provider<string | URL>, options?: ClientOptions): Client;

/** The default reconnect policy by close code (see the README's table). */
export function defaultShouldReconnect(close: CloseInfo): boolean;

/** The wait (ms) before retry number attempt (from 0): full jitter under min * 2^attempt, capped at max. */
export function backoffDelay(attempt: number, min: number, max: number, random?: () => number): number;
