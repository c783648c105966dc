// negotiate.js connects to a ws server offering a subprotocol (and, as
// every client here does, permessage-deflate), then reports each step as
// an event: in a browser (the page's ?ws= parameter names the server)
// into window.__events, in Node as one JSON line on stdout. Run in Node as
//
//   node negotiate.js ws|builtin ws://host/ws
//
// (ws: the npm package; builtin: Node's own WebSocket, a global from
// Node 22, behind --experimental-websocket in Node 20).
async function negotiate(WS, url, log) {
  const ws = new WS(url, ['v1.json', 'token.secret']);
  const next = (pred) => new Promise((resolve, reject) => {
    const onMessage = (ev) => {
      const m = JSON.parse(typeof ev.data === 'string' ? ev.data : ev.data.toString());
      if (pred(m)) { ws.removeEventListener('message', onMessage); resolve(m); }
    };
    ws.addEventListener('message', onMessage);
    ws.addEventListener('close', (ev) => reject(new Error('closed ' + ev.code)));
  });
  ws.addEventListener('error', () => log(['error']));
  ws.addEventListener('close', (ev) => log(['close', ev.code]));
  await new Promise((resolve) => ws.addEventListener('open', resolve, { once: true }));
  log(['open', ws.protocol, ws.extensions]);

  const subscribed = next((m) => m.type === 'subscribed');
  ws.send(JSON.stringify({ action: 'subscribe', channel: 'news' }));
  await subscribed;
  // An 8 KB frame (JSON may end in spaces): clients that compress what
  // they send (npm ws above 1 KB, browsers always) send it compressed.
  const pong = next((m) => m.type === 'pong');
  ws.send('{"action":"ping"}' + ' '.repeat(8000));
  await pong;
  log(['ready']);
  const m = await next((m) => m.type === 'message');
  log(['message', m.message.text.length]);
  ws.close(1000);
}

if (typeof window !== 'undefined') {
  window.__events = [];
  const url = new URLSearchParams(location.search).get('ws');
  negotiate(WebSocket, url, (e) => window.__events.push(e)).catch((err) => window.__events.push(['failed', String(err)]));
} else {
  const WS = process.argv[2] === 'ws' ? require('ws') : globalThis.WebSocket;
  negotiate(WS, process.argv[3], (e) => console.log(JSON.stringify(e))).catch((err) => {
    console.log(JSON.stringify(['failed', String(err)]));
    process.exitCode = 1;
  });
}
