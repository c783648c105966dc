// pusher-js (through Laravel Echo) reconnecting by itself: it prints each
// connection it makes, each time its channel is subscribed, and each event,
// while the Go test shuts its server down gracefully and starts another on
// the same address.
import { echo, nodes } from './lib.mjs';

const e = echo(nodes[0], 'rita');
const pusher = e.connector.pusher;
pusher.connection.bind('state_change', (s) => console.log(`state ${s.previous} ${s.current}`));
pusher.connection.bind('connected', () => console.log('connected ' + pusher.connection.socket_id));
pusher.connection.bind('error', (err) => console.log('error ' + JSON.stringify(err?.data ?? err?.error?.data ?? null)));
const ch = e.channel('news').listen('.Posted', (d) => {
  console.log('got ' + d.id);
  if (d.id === 'last') {
    console.log('done');
    process.exit(0);
  }
});
ch.subscribed(() => console.log('subscribed'));
