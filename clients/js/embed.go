// Package jsclient ships the JavaScript client (clients/js/src, ES
// modules without dependencies) inside Go programs, for a server that
// serves it to its own pages, as examples/chat does:
//
//	mux.Handle("GET /js/", http.StripPrefix("/js/", jsclient.Handler()))
//
// and in the page:
//
//	<script type="module">
//	  import { connect } from '/js/index.js';
//	</script>
//
// The client's documentation is clients/js/README.md.
package jsclient

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed src/*.js
var files embed.FS

// FS holds the client's modules at its root: index.js (the entry point),
// client.js, subscription.js and the others it imports.
var FS fs.FS = func() fs.FS {
	sub, err := fs.Sub(files, "src")
	if err != nil {
		panic(err) // the embedded directory is there
	}
	return sub
}()

// Handler serves FS, each module as text/javascript.
func Handler() http.Handler { return http.FileServerFS(FS) }
