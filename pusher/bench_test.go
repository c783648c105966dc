package pusher

import (
	"encoding/json"
	"testing"

	"github.com/vortechron/go-ws/internal/wire"
)

// BenchmarkEncode measures the encoding of the events a hub encodes once
// per protocol and shares with every subscriber: it should not allocate.
func BenchmarkEncode(b *testing.B) {
	p := &protocol{app: App{ID: "1", Key: "k", Secret: "s"}}
	events := map[string]*wire.Event{
		"message": {Kind: wire.Message, Channel: "private-orders.1", Name: `App\Events\OrderShipped`, Data: json.RawMessage(`{"order":{"id":7,"status":"shipped","items":[1,2,3]}}`)},
		"whisper": {Kind: wire.WhisperEvent, Channel: "presence-chat", Name: "typing", From: "42", Data: json.RawMessage(`{"name":"bob"}`)},
		"text":    {Kind: wire.Message, Channel: "news", Data: json.RawMessage(`"hello there"`)},
		"member":  {Kind: wire.Join, Channel: "presence-chat", Member: &wire.Member{ID: "42", Info: json.RawMessage(`{"name":"BOB"}`)}},
	}
	for name, ev := range events {
		b.Run(name, func(b *testing.B) {
			buf := make([]byte, 0, 512)
			b.ReportAllocs()
			for b.Loop() {
				buf = p.Encode(buf[:0], ev)
			}
		})
	}
}
