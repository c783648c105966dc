package pusher

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	ws "github.com/vortechron/go-ws"
	"github.com/vortechron/go-ws/internal/wire"
)

var fuzzApp = App{ID: "1", Key: "key", Secret: "secret"}

// FuzzDecode feeds arbitrary client frames to the Pusher decoder: it never
// panics, a refusal always says what was wrong with one of ws's codes,
// nothing unsigned is granted, and the answer the server would send is
// one valid JSON object.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"event":"pusher:subscribe","data":{"channel":"news"}}`,
		`{"event":"pusher:subscribe","data":{"channel":"private-a","auth":"key:00"}}`,
		`{"event":"pusher:subscribe","data":"{\"channel\":\"presence-a\",\"auth\":\"key:1\",\"channel_data\":\"{\\\"user_id\\\":1}\"}"}`,
		`{"event":"pusher:unsubscribe","data":{"channel":"news"}}`,
		`{"event":"pusher:ping","data":{}}`,
		`{"event":"pusher:signin","data":{"auth":"key:x","user_data":"{\"id\":\"u\"}"}}`,
		`{"event":"client-typing","channel":"private-a","data":{"x":[1,2,{"y":null}]}}`,
		`{"event":"client-","channel":"private-encrypted-a","data":"s"}`,
		`{"event":5}`, `[]`, ``, `{"event":"pusher:subscribe","data":{"channel":1}}`,
	} {
		f.Add(s)
	}
	p := &protocol{app: fuzzApp, activityTimeout: 30, clientEvents: clientEventLimit{perSecond: 1 << 20}}
	f.Fuzz(func(t *testing.T, frame string) {
		a := p.Decode("1.1", []byte(frame))
		switch a.Kind {
		case wire.Invalid:
			if a.Err == nil || a.Code == "" {
				t.Fatalf("refusal without a reason: %+v", a)
			}
			ev := wire.Event{Kind: wire.Error, Code: a.Code, Text: a.Err.Error(), Action: a.Name, Channel: a.Channel}
			checkFrame(t, p.Encode(nil, &ev))
		case wire.Subscribe:
			if a.Grant != nil {
				var d subscribeIn
				_ = decodeData(extractData(frame), &d)
				cd := ""
				if d.ChannelData != nil {
					cd = *d.ChannelData
				}
				if !validToken(d.Auth, fuzzApp.channelToken("1.1", a.Channel, cd)) {
					t.Fatalf("granted without a valid token: %q", frame)
				}
			}
		case wire.Signin:
			if a.Grant == nil || a.Grant.Member == nil || a.Grant.Member.ID == "" {
				t.Fatalf("sign-in without a user: %+v", a)
			}
		case wire.Whisper:
			ev := wire.Event{Kind: wire.WhisperEvent, Channel: a.Channel, Name: a.Event, From: "u", Data: a.Data}
			if json.Valid(a.Data) {
				checkFrame(t, p.Encode(nil, &ev))
			}
		}
	})
}

// extractData returns the "data" of a client frame.
func extractData(frame string) json.RawMessage {
	var in frameIn
	_ = json.Unmarshal([]byte(frame), &in)
	return in.Data
}

func checkFrame(t *testing.T, b []byte) {
	t.Helper()
	if len(b) == 0 {
		return
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("the server's frame is not a JSON object: %v: %s", err, b)
	}
}

// FuzzData checks the data mapping on arbitrary JSON: Pusher clients get a
// JSON string that pusher-js turns back into the message's value.
func FuzzData(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `"x"`, `"2"`, `" {}"`, `[1,"\u2028"]`, `null`, `"\\"`, `"\"a\""`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		if !json.Valid([]byte(msg)) {
			return
		}
		out := appendData(nil, json.RawMessage(msg))
		var data string
		if err := json.Unmarshal(out, &data); err != nil {
			t.Fatalf("data %s is not a JSON string: %v", out, err)
		}
		var got, want any
		if json.Unmarshal([]byte(data), &got) != nil {
			got = data
		}
		_ = json.Unmarshal([]byte(msg), &want)
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(want)
		if string(gb) != string(wb) {
			t.Fatalf("message %s: pusher-js reads %s, want %s", msg, gb, wb)
		}
	})
}

// FuzzAPI sends arbitrary HTTP API requests, unsigned and signed: an
// unsigned one is never accepted, a signed one gets one of the documented
// statuses, and nothing panics.
func FuzzAPI(f *testing.F) {
	f.Add("POST", "/apps/1/events", "", `{"name":"e","channel":"news","data":"{}"}`, true)
	f.Add("POST", "/apps/1/events", "", `{"name":"e","channels":["a","b"],"data":"x","socket_id":"1.2","info":"subscription_count"}`, true)
	f.Add("POST", "/apps/1/batch_events", "", `{"batch":[{"name":"e","channel":"a","data":"1"}]}`, true)
	f.Add("GET", "/apps/1/channels", "filter_by_prefix=presence-&info=user_count", "", true)
	f.Add("GET", "/apps/1/channels/presence-x/users", "", "", true)
	f.Add("GET", "/apps/1/channels/presence-x", "info=user_count,subscription_count", "", false)
	f.Add("POST", "/apps/1/users/u/terminate_connections", "", "{}", true)
	f.Add("POST", "/apps/1/events", "auth_key=key&auth_timestamp=1&auth_signature=x", `{}`, false)

	ctx, cancel := context.WithCancel(context.Background())
	hub := ws.NewHub(ctx, nil, nil, ws.Config{})
	go hub.Run()
	f.Cleanup(func() {
		cancel()
		<-hub.Done()
	})
	s := New(hub, fuzzApp, nil)
	if s.Err() != nil {
		f.Fatal(s.Err())
	}
	f.Fuzz(func(t *testing.T, method, path, query, body string, signed bool) {
		u, err := url.Parse("http://h" + path)
		if err != nil || !strings.HasPrefix(path, "/") {
			return
		}
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		if signed {
			for _, k := range []string{"auth_key", "auth_timestamp", "auth_version", "auth_signature", "body_md5"} {
				q.Del(k)
			}
			q.Set("auth_key", fuzzApp.Key)
			q.Set("auth_timestamp", strconv.FormatInt(time.Now().Unix(), 10))
			q.Set("auth_version", "1.0")
			if body != "" {
				sum := md5.Sum([]byte(body))
				q.Set("body_md5", hex.EncodeToString(sum[:]))
			}
			q.Set("auth_signature", sign(fuzzApp.Secret, stringToSign(method, u.Path, q)))
		}
		req, err := http.NewRequest(method, "http://h"+path+"?"+q.Encode(), strings.NewReader(body))
		if err != nil {
			return
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		allowed := []int{400, 401, 404, 405, 413, 503, 504}
		if signed {
			allowed = append(allowed, 200)
		}
		if !strings.Contains(u.Path, "/apps/") && rec.Code == http.StatusBadRequest {
			return // a plain request to /app/{key}
		}
		if !slices.Contains(allowed, rec.Code) {
			t.Fatalf("%s %s?%s signed=%v: status %d: %s", method, path, q.Encode(), signed, rec.Code, rec.Body)
		}
	})
}
