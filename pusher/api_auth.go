package pusher

import (
	"crypto/md5"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MaxClockSkew is how far a request's auth_timestamp may be from the
// server's clock, either way.
const MaxClockSkew = 600 * time.Second

// apiError is a refused HTTP API request: its status and what to tell the
// caller.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func errorf(status int, msg string) *apiError { return &apiError{status, msg} }

// authenticate checks a request's signature as Pusher defines it: the
// query carries auth_key (the app key), auth_timestamp (Unix seconds,
// within MaxClockSkew of now), auth_version (1.0), body_md5 (hex MD5 of
// the body, when there is one) and auth_signature, the hex
// HMAC-SHA256, under the app secret, of
//
//	METHOD \n PATH \n every other query parameter, keys lower-cased and sorted, as key=value joined by &
//
// with the values as the client sent them before URL-encoding. A request
// replayed within MaxClockSkew is accepted (as by Pusher): only TLS keeps
// it from being captured.
func (s *Server) authenticate(r *http.Request, body []byte, now time.Time) *apiError {
	q := r.URL.Query()
	for _, k := range []string{"auth_key", "auth_timestamp", "auth_signature"} {
		if q.Get(k) == "" {
			return errorf(http.StatusUnauthorized, "missing "+k+"; sign the request as Pusher's server SDKs do")
		}
	}
	if q.Get("auth_key") != s.app.Key {
		return errorf(http.StatusUnauthorized, "unknown auth_key")
	}
	if v := q.Get("auth_version"); v != "" && v != "1.0" {
		return errorf(http.StatusUnauthorized, "unsupported auth_version "+strconv.Quote(cut(v))+"; use 1.0")
	}
	ts, err := strconv.ParseInt(q.Get("auth_timestamp"), 10, 64)
	if err != nil {
		return errorf(http.StatusUnauthorized, "auth_timestamp is not a number of seconds")
	}
	if skew := now.Sub(time.Unix(ts, 0)); skew > MaxClockSkew || skew < -MaxClockSkew {
		return errorf(http.StatusUnauthorized, "Timestamp expired: given timestamp ("+strconv.FormatInt(ts, 10)+
			") not within 600s of server time ("+strconv.FormatInt(now.Unix(), 10)+")")
	}
	if len(body) > 0 || q.Has("body_md5") {
		sum := md5.Sum(body)
		if q.Get("body_md5") != hex.EncodeToString(sum[:]) {
			return errorf(http.StatusUnauthorized, "body_md5 does not match the body")
		}
	}
	signed := stringToSign(r.Method, "", q)
	for _, path := range requestPaths(r) {
		signed = stringToSign(r.Method, path, q)
		if validToken(q.Get("auth_signature"), sign(s.app.Secret, signed)) {
			return nil
		}
	}
	return errorf(http.StatusUnauthorized, "Invalid signature: expected the HMAC SHA256 hex digest, under the app secret, of "+strconv.Quote(cut(signed)))
}

// stringToSign is what a request's auth_signature signs.
func stringToSign(method, path string, q url.Values) string {
	keys := make([]string, 0, len(q))
	lower := make(map[string]string, len(q))
	for k, vs := range q {
		lk := strings.ToLower(k)
		if lk == "auth_signature" || len(vs) == 0 {
			continue
		}
		if _, dup := lower[lk]; !dup {
			keys = append(keys, lk)
		}
		lower[lk] = vs[0]
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString(strings.ToUpper(method))
	b.WriteByte('\n')
	b.WriteString(path)
	b.WriteByte('\n')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(lower[k])
	}
	return b.String()
}

// requestPaths are the paths a request may have been signed with: the
// one it has, and the one it came with when a handler (http.StripPrefix)
// cut a prefix off.
func requestPaths(r *http.Request) []string {
	paths := []string{r.URL.Path}
	if u, err := url.ParseRequestURI(r.RequestURI); err == nil && u.Path != r.URL.Path {
		paths = append(paths, u.Path)
	}
	return paths
}
