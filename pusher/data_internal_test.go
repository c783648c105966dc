package pusher

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vortechron/go-ws/internal/wire"
)

// TestDataMapping checks the mapping of docs/pusher.md both ways: what
// pusher-js gets (data parsed when it is JSON) is the value native clients
// get, and HTTP API data comes back as it was sent.
func TestDataMapping(t *testing.T) {
	for _, tc := range []struct {
		msg  string // the hub's message, JSON
		wire string // the data field Pusher clients get
	}{
		{`{"a":1}`, `"{\"a\":1}"`},
		{`[1,"x"]`, `"[1,\"x\"]"`},
		{`42`, `"42"`},
		{`true`, `"true"`},
		{`null`, `"null"`},
		{`"hello"`, `"hello"`},
		{`"2"`, `"\"2\""`},
		{`"{}"`, `"\"{}\""`},
		{`"\"hi\""`, `"\"\\\"hi\\\"\""`},
		{`"\n 5"`, `"\"\\n 5\""`},
		{`"tomato"`, `"tomato"`},
		{`{"s":"<&>\u2028é"}`, `"{\"s\":\"<&>\\u2028é\"}"`},
	} {
		t.Run(tc.msg, func(t *testing.T) {
			got := string(appendData(nil, json.RawMessage(tc.msg)))
			require.Equal(t, tc.wire, got)
			// pusher-js: JSON.parse(data), falling back to the string.
			var data string
			require.NoError(t, json.Unmarshal([]byte(got), &data))
			var parsed any
			if json.Unmarshal([]byte(data), &parsed) != nil {
				parsed = data
			}
			var want any
			require.NoError(t, json.Unmarshal([]byte(tc.msg), &want))
			require.Equal(t, want, parsed, "pusher-js reads the message's value")
		})
	}
	// The HTTP API's data string comes back to Pusher clients as sent.
	for _, data := range []string{`{"id":1}`, `plain text`, `2`, `"2"`, `[]`, ``, ` {"a" : 1} `, "line\nbreak"} {
		got := appendData(nil, messageFromData(data))
		var back string
		require.NoError(t, json.Unmarshal(got, &back))
		require.Equal(t, data, back, "data %q", data)
	}
}

// TestUserMessage: a message the hub addresses to one user (the "#user"
// pseudo-channel of Hub.PublishToUser) is on the user's
// #server-to-user-{id} channel for Pusher clients.
func TestUserMessage(t *testing.T) {
	p := &protocol{app: App{ID: "1", Key: "k", Secret: "s"}}
	ev := wire.Event{Kind: wire.Message, Channel: userPseudoChannel, User: "u1", Name: "note", Data: json.RawMessage(`{"a":1}`)}
	require.JSONEq(t, `{"event":"note","channel":"#server-to-user-u1","data":"{\"a\":1}"}`, string(p.Encode(nil, &ev)))
}
