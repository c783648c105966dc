// @vortechron/go-ws-client: the JavaScript client for the ws Go server.
//
//   import { connect } from '@vortechron/go-ws-client';
//   const client = connect('wss://example.com/ws', { token });
//   client.subscribe('news').on('message', (message) => console.log(message));
//
// See README.md for the API, the options and the reconnect policy.

export { Client, connect } from './client.js';
export { Subscription } from './subscription.js';
export { WsError } from './errors.js';
export { defaultShouldReconnect, backoffDelay } from './reconnect.js';
