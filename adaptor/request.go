package adaptor

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// newRequest builds the *http.Request that net/http would have made for
// the request in fctx. Everything is copied: the request outlives the
// handler, and fasthttp reuses its buffers after that.
func newRequest(ctx context.Context, fctx *fasthttp.RequestCtx) (*http.Request, error) {
	uri := string(fctx.RequestURI())
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return nil, err
	}
	proto := string(fctx.Request.Header.Protocol())
	major, minor, ok := http.ParseHTTPVersion(proto)
	if !ok {
		major, minor = 1, 1
	}
	r := &http.Request{
		Method:     string(fctx.Method()),
		URL:        u,
		Proto:      proto,
		ProtoMajor: major,
		ProtoMinor: minor,
		Header:     make(http.Header),
		Body:       http.NoBody,
		Host:       string(fctx.Host()),
		RemoteAddr: fctx.RemoteAddr().String(),
		RequestURI: uri,
		TLS:        fctx.TLSConnectionState(),
	}
	fctx.Request.Header.VisitAll(func(k, v []byte) {
		if key := string(k); !strings.EqualFold(key, "Host") { // net/http keeps it in r.Host only
			r.Header.Add(key, string(v))
		}
	})
	if body := fctx.Request.Body(); len(body) > 0 {
		r.ContentLength = int64(len(body))
		r.Body = io.NopCloser(bytes.NewReader(bytes.Clone(body)))
	}
	return r.WithContext(ctx), nil
}

// recorder is the http.ResponseWriter that middleware and Hub.Accept
// write to; what they wrote is then sent through Fiber.
type recorder struct {
	header http.Header
	sent   http.Header // header as it was at WriteHeader
	status int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: make(http.Header)} }

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
		r.sent = r.header.Clone()
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}

// writeTo sends the recorded response, 200 with no body if nothing was
// written, as net/http would.
func (r *recorder) writeTo(c *fiber.Ctx) {
	r.WriteHeader(http.StatusOK)
	resp := c.Response()
	for k, vs := range r.sent {
		switch http.CanonicalHeaderKey(k) {
		case "Content-Length":
			continue // fasthttp sets it from the body
		case "Set-Cookie":
			for _, v := range vs {
				ck := fasthttp.AcquireCookie()
				if ck.Parse(v) == nil {
					resp.Header.SetCookie(ck)
				}
				fasthttp.ReleaseCookie(ck)
			}
			continue
		}
		for _, v := range vs {
			resp.Header.Add(k, v)
		}
	}
	resp.SetStatusCode(r.status)
	resp.SetBody(r.body.Bytes())
}
