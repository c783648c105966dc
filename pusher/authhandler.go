package pusher

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strings"

	ws "github.com/vortechron/go-ws"
)

// authRequest is what pusher-js POSTs to an authorization endpoint.
type authRequest struct {
	SocketID    string `json:"socket_id"`
	ChannelName string `json:"channel_name"`
}

// AuthHandler returns the channel authorization endpoint, for apps whose
// backend is this Go service (Laravel apps use Laravel's
// /broadcasting/auth instead). pusher-js (channelAuthorization.endpoint;
// Laravel Echo's authEndpoint) POSTs socket_id and channel_name, as a
// form or JSON. The endpoint runs Options.Middleware, identifies the user
// with GetUserID, lets AuthProvider or AuthHandler decide as they do for
// ws's native clients, and answers 200 with {"auth":...} and, for a
// presence channel, "channel_data" ({"user_id":...,"user_info":...} with
// GetUserInfo's info); for a private-encrypted- channel also
// "shared_secret". Refusals are 403 (anonymous, or refused by the hooks),
// 400 (bad input) and 405 (not POST).
func (s *Server) AuthHandler() http.Handler {
	return s.withMiddleware(http.HandlerFunc(s.authorizeChannel))
}

func (s *Server) authorizeChannel(w http.ResponseWriter, r *http.Request) {
	req, ok := s.readAuthRequest(w, r)
	if !ok {
		return
	}
	channel := req.ChannelName
	if err := ws.ValidChannelName(channel); err != nil {
		http.Error(w, "Bad Request: channel_name: "+strings.TrimPrefix(err.Error(), "ws: "), http.StatusBadRequest)
		return
	}
	if !strings.HasPrefix(channel, ws.PrivatePrefix) && !strings.HasPrefix(channel, ws.PresencePrefix) {
		http.Error(w, "Bad Request: only private- and presence- channels are authorized", http.StatusBadRequest)
		return
	}
	userID := s.userID(r)
	if userID == "" {
		s.reportAuth(&ws.AuthError{Channel: channel, Reason: "anonymous requests cannot join private or presence channels"})
		http.Error(w, "Forbidden: not signed in", http.StatusForbidden)
		return
	}
	if aerr := s.authorize(r, userID, channel); aerr != nil {
		s.reportAuth(aerr)
		http.Error(w, "Forbidden: not authorized for "+channel, http.StatusForbidden)
		return
	}
	out := map[string]string{}
	var channelData string
	if strings.HasPrefix(channel, ws.PresencePrefix) {
		cd, err := json.Marshal(struct {
			UserID   string `json:"user_id"`
			UserInfo any    `json:"user_info,omitempty"`
		}{userID, s.userInfo(r, userID)})
		if err != nil {
			http.Error(w, "Internal Server Error: GetUserInfo returned a value that is not JSON-encodable", http.StatusInternalServerError)
			return
		}
		channelData = string(cd)
		out["channel_data"] = channelData
	}
	if strings.HasPrefix(channel, EncryptedPrefix) {
		if s.app.EncryptionMasterKey == nil {
			http.Error(w, "Bad Request: encrypted channels need App.EncryptionMasterKey", http.StatusBadRequest)
			return
		}
		sum := sha256.Sum256(append([]byte(channel), s.app.EncryptionMasterKey...))
		out["shared_secret"] = base64.StdEncoding.EncodeToString(sum[:])
	}
	out["auth"] = s.app.channelToken(req.SocketID, channel, channelData)
	writeJSON(w, out)
}

// UserAuthHandler returns the user authentication endpoint that
// pusher-js's signin() POSTs to (userAuthentication.endpoint), with
// socket_id, as a form or JSON. It runs Options.Middleware, identifies
// the user with GetUserID and answers 200 with {"auth":...,"user_data":...},
// user_data being {"id":...,"user_info":...} with GetUserInfo's info; 403
// when the request is anonymous. A signed-in connection may subscribe to
// #server-to-user-{id}, where the HTTP API's events for the user (and
// Hub.Publish on ws.UserChannelPrefix + id) reach it.
func (s *Server) UserAuthHandler() http.Handler {
	return s.withMiddleware(http.HandlerFunc(s.authenticateUser))
}

func (s *Server) authenticateUser(w http.ResponseWriter, r *http.Request) {
	req, ok := s.readAuthRequest(w, r)
	if !ok {
		return
	}
	userID := s.userID(r)
	if userID == "" {
		http.Error(w, "Forbidden: not signed in", http.StatusForbidden)
		return
	}
	ud, err := json.Marshal(struct {
		ID       string `json:"id"`
		UserInfo any    `json:"user_info,omitempty"`
	}{userID, s.userInfo(r, userID)})
	if err != nil {
		http.Error(w, "Internal Server Error: GetUserInfo returned a value that is not JSON-encodable", http.StatusInternalServerError)
		return
	}
	writeJSON(w, map[string]string{"auth": s.app.userToken(req.SocketID, string(ud)), "user_data": string(ud)})
}

// readAuthRequest reads an authorization request, answering a bad one.
func (s *Server) readAuthRequest(w http.ResponseWriter, r *http.Request) (authRequest, bool) {
	var req authRequest
	if s.err != nil {
		http.Error(w, "Internal Server Error: "+s.err.Error(), http.StatusInternalServerError)
		return req, false
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "Method Not Allowed: POST socket_id and channel_name", http.StatusMethodNotAllowed)
		return req, false
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/json" {
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "Bad Request: body is not a JSON object with socket_id and channel_name", http.StatusBadRequest)
			return req, false
		}
	} else {
		if err := r.ParseForm(); err != nil {
			http.Error(w, "Bad Request: body is not a form with socket_id and channel_name", http.StatusBadRequest)
			return req, false
		}
		req.SocketID, req.ChannelName = r.PostForm.Get("socket_id"), r.PostForm.Get("channel_name")
	}
	if !validSocketID(req.SocketID) {
		http.Error(w, `Bad Request: socket_id must look like "123.456"`, http.StatusBadRequest)
		return req, false
	}
	return req, true
}

// authorize applies the endpoint's AuthProvider or AuthHandler, as the
// hub does for a native client's subscribe.
func (s *Server) authorize(r *http.Request, userID, channel string) *ws.AuthError {
	switch {
	case s.opts.AuthProvider != nil:
		if err := s.opts.AuthProvider.Authorize(r.Context(), userID, channel); err != nil {
			return &ws.AuthError{UserID: userID, Channel: channel, Reason: "refused by AuthProvider", Err: err}
		}
	case s.opts.AuthHandler != nil:
		if !s.opts.AuthHandler(userID, channel) {
			return &ws.AuthError{UserID: userID, Channel: channel, Reason: "refused by AuthHandler", Err: errDenied}
		}
	default:
		return &ws.AuthError{UserID: userID, Channel: channel, Reason: "no AuthHandler or AuthProvider is configured, so private and presence channels are closed"}
	}
	return nil
}

var errDenied = errors.New("denied")

func (s *Server) userID(r *http.Request) string {
	if s.opts.GetUserID == nil {
		return ""
	}
	return s.opts.GetUserID(r)
}

func (s *Server) userInfo(r *http.Request, userID string) any {
	if s.opts.GetUserInfo == nil {
		return nil
	}
	return s.opts.GetUserInfo(r, userID)
}

func (s *Server) reportAuth(err *ws.AuthError) {
	if s.opts.ErrorHandler != nil {
		s.opts.ErrorHandler(err)
	}
}

// withMiddleware wraps h in Options.Middleware, the first running first.
func (s *Server) withMiddleware(h http.Handler) http.Handler {
	for i := len(s.opts.Middleware) - 1; i >= 0; i-- {
		if m := s.opts.Middleware[i]; m != nil {
			h = m.Handle(h)
		}
	}
	return h
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}
