// Harness code that readme_client_test.go runs before the README's
// JavaScript client (the js block after the marker in README.md).
//
// Node 20 has no global WebSocket: the npm "ws" package stands in for the
// browser's. With WS_TEST_WEBSOCKET=global (Node 22 and later) Node's own
// is used, as the README says. It connects to the test's server
// (WS_TEST_HOST, host:port) as the test's user (WS_TEST_USER), whatever
// host and user the README's URL names; the rest of the URL is the
// README's.
const BaseWebSocket = process.env.WS_TEST_WEBSOCKET === "global" ? globalThis.WebSocket : require("ws");
globalThis.WebSocket = class extends BaseWebSocket {
  constructor(url, protocols) {
    const u = new URL(url);
    u.host = process.env.WS_TEST_HOST;
    u.searchParams.set("user", process.env.WS_TEST_USER);
    super(u.href, protocols);
  }
};
