package websocket

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"net/url"
	"sort"
)

// SignatureHeader carries a request's signature, as Twilio sends it.
const SignatureHeader = "X-Twilio-Signature"

// Signature is Twilio's request signature: the URL, then each POST
// parameter's name and value in the order of the names (a name's values in
// their own order), signed with HMAC-SHA1 keyed by the auth token, in
// base64. A WebSocket handshake has no parameters: it signs the URL alone,
// exactly as written in the configuration, so the request validators agent
// frameworks already use accept it.
func Signature(authToken, rawURL string, params url.Values) string {
	mac := hmac.New(sha1.New, []byte(authToken))
	mac.Write([]byte(rawURL))
	names := make([]string, 0, len(params))
	for name := range params {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		values := append([]string(nil), params[name]...)
		sort.Strings(values)
		for _, v := range values {
			mac.Write([]byte(name))
			mac.Write([]byte(v))
		}
	}
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// ValidSignature reports, in constant time, whether signature is the one
// Signature gives for the same request.
func ValidSignature(authToken, rawURL string, params url.Values, signature string) bool {
	want := Signature(authToken, rawURL, params)
	return subtle.ConstantTimeCompare([]byte(want), []byte(signature)) == 1
}
