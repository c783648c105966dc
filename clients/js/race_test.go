//go:build race

package jsclient_test

// raceEnabled: this is go test -race.
const raceEnabled = true
