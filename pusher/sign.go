package pusher

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// Pusher's signatures are hex(HMAC-SHA256(secret, text)). A channel
// authorization ("auth" of pusher:subscribe) signs
// "socket_id:channel_name" or, with channel_data,
// "socket_id:channel_name:channel_data"; a user authentication ("auth" of
// pusher:signin) signs "socket_id::user::user_data"; the HTTP API signs
// the request (see api_auth.go); webhooks sign their body. Tokens sent to
// clients are "key:signature".

// sign returns hex(HMAC-SHA256(secret, parts joined)).
func sign(secret string, parts ...string) string {
	m := hmac.New(sha256.New, []byte(secret))
	for _, p := range parts {
		m.Write([]byte(p))
	}
	return hex.EncodeToString(m.Sum(nil))
}

// channelToken is the auth of a channel subscription.
func (a *App) channelToken(socketID, channel, channelData string) string {
	if channelData == "" {
		return a.Key + ":" + sign(a.Secret, socketID, ":", channel)
	}
	return a.Key + ":" + sign(a.Secret, socketID, ":", channel, ":", channelData)
}

// userToken is the auth of a sign-in.
func (a *App) userToken(socketID, userData string) string {
	return a.Key + ":" + sign(a.Secret, socketID, "::user::", userData)
}

// validToken reports, in constant time for tokens of the right length,
// whether token is want.
func validToken(token, want string) bool {
	return hmac.Equal([]byte(token), []byte(want))
}
