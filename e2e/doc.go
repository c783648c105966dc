// Package e2e holds the tests that drive the project from outside with
// tools the library itself must not depend on: a headless Chromium
// (chromedp) on the chat example and the JavaScript client, and
// Chromium, the npm ws package and Node's own WebSocket negotiating a
// subprotocol and permessage-deflate. It is a module of its own so that
// the library's go.mod never lists those tools; `make test` runs it.
package e2e
