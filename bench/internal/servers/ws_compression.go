package servers

import ws "github.com/vortechron/go-ws"

// wsCompression is the one place that turns permessage-deflate on for the
// ws server (-compress, -compress-level). It reports whether it could.
//
// Today's library has no compression, so it returns false and the
// compression scenario runs ws uncompressed. Once Config grows the fields
// issue 15 names, replace the body with:
//
//	cfg.EnableCompression = true
//	cfg.CompressionLevel = opts.CompressLevel
//	cfg.CompressionThreshold = 0 // compress every publication
//	return true
//
// and set WSCompression to true so the harness adds the "ws (deflate)" row.
func wsCompression(cfg *ws.Config, opts Options) bool {
	_ = cfg
	_ = opts
	return false
}

// WSCompression says whether wsCompression can turn compression on; the
// compression scenario runs "ws -compress" only when it is true.
const WSCompression = false
