package servers

import ws "github.com/vortechron/go-ws"

// wsCompression is the one place that turns permessage-deflate on for the
// ws server (-compress, -compress-level). It reports whether it could.
func wsCompression(cfg *ws.Config, opts Options) bool {
	cfg.EnableCompression = true
	cfg.CompressionLevel = opts.CompressLevel
	// Every publication of the scenario is about 1 KB, well above the
	// default threshold (128 bytes); the default is kept.
	return true
}

// WSCompression says whether wsCompression can turn compression on; the
// compression scenario runs "ws -compress" only when it is true.
const WSCompression = true
