// Package e2e holds the tests that drive the project from outside with
// tools the library itself must not depend on: a headless Chromium
// (chromedp) on the chat example. It is a module of its own so that the
// library's go.mod never lists those tools; `make test` runs it.
package e2e
