// Compiled by `npm run typecheck` (tsc --noEmit), never run: the README's
// usage must type-check against index.d.ts.

import NodeWebSocket from 'ws';

import { Client, connect, defaultShouldReconnect, WsError, type Member, type Position } from '@vortechron/go-ws-client';

declare const savedPosition: Position | null;

const client = connect(async () => 'wss://example.com/ws', {
  params: { user: 'alice' },
  token: () => Promise.resolve('jwt'),
  WebSocket: globalThis.WebSocket,
  minReconnectDelay: 500,
  maxReconnectDelay: 20_000,
  pingInterval: 25_000,
  pongTimeout: 10_000,
  shouldReconnect: (close) => close.code !== 4001 && defaultShouldReconnect(close),
});

client.on('state', (state, previous) => console.log(previous, '->', state));
client.on('disconnected', ({ code, reason, willReconnect }) => console.log(code, reason, willReconnect));
client.on('reconnecting', ({ attempt, delay }) => console.log(attempt, delay));
client.on('error', (err: WsError) => console.error(err.code, err.action, err.channel, err.message));

interface Order {
  id: number;
  total: number;
}

const orders = client.subscribe<Order>('private-orders', savedPosition ? { since: savedPosition } : {});
orders.on('message', (order, { event, offset }) => console.log(order.id, order.total, event, offset));
orders.listen('order.created', (order) => console.log(order.total));
orders.on('recovered', () => console.log('caught up'));
orders.on('reset', () => console.log('reload'));
const pos: Position | null = orders.position;
console.log(pos?.offset, pos?.epoch);

const room = client.subscribe('presence-room-1');
room
  .here((members: Member[]) => console.log(members.map((m) => m.id)))
  .joining((m) => console.log('joined', m.id, m.info))
  .leaving((m) => console.log('left', m.id))
  .listenForWhisper('typing', (data, from) => console.log(from, data));
room.on('whisper', (event, data, from) => console.log(event, data, from));
const sent: boolean = room.whisper('typing', { isTyping: true });
const size: number = room.members.size;
console.log(sent, size, room.state, room.isPresence);
room.unsubscribe();

const later = new Client('wss://example.com/ws', { reconnect: false });
later.connect().close(1000, 'bye');
// @ts-expect-error: subscribe needs a channel name
client.subscribe();

// Node: the "ws" package's WebSocket fits the option.
connect('ws://127.0.0.1:8080/ws', { WebSocket: NodeWebSocket });
