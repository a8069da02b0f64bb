package websocket

import (
	"encoding/json"
	"strings"
)

// mediaPayload reads the base64 payload of a media message, the message an
// agent sends fifty times a second, without encoding/json's reflection:
// the message is checked (json.Valid) and walked once. ok is false for
// anything it does not read exactly as json.Unmarshal into inboundMsg
// would: another event, a string with escapes, a key that only a
// case-insensitive match would take for a field, a field of inboundMsg
// other than event and media. parse then reads the message in full, so
// the answer never differs from the full reading's (FuzzMediaPayload).
func mediaPayload(b []byte) (payload []byte, ok bool) {
	if !json.Valid(b) {
		return nil, false
	}
	var event []byte
	ok = eachMember(b, func(key, val []byte) bool {
		switch string(key) {
		case "event":
			s, plain := plainString(val)
			event = s
			return plain
		case "media":
			return eachMember(val, func(key, val []byte) bool {
				if string(key) == "payload" {
					s, plain := plainString(val)
					payload = s
					return plain
				}
				return !strings.EqualFold(string(key), "payload")
			})
		}
		for _, field := range inboundFields {
			if strings.EqualFold(string(key), field) {
				return false
			}
		}
		return true
	})
	if !ok || string(event) != eventMedia || len(payload) == 0 {
		return nil, false
	}
	return payload, true
}

// inboundFields are the JSON names of inboundMsg's fields.
var inboundFields = [...]string{"event", "media", "mark", "outputContext", "state", "finishAudio", "role", "text", "final", "type", "data"}

// eachMember calls fn with the key and the raw value of each member of the
// object obj, which is valid JSON, in order, while fn returns true. It
// returns false when obj is not an object, when a key is not a plain
// string (see plainString), or when fn does.
func eachMember(obj []byte, fn func(key, val []byte) bool) bool {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return false
	}
	i = skipSpace(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return true
	}
	for i < len(obj) {
		end := skipValue(obj, i)
		key, plain := plainString(obj[i:end])
		if !plain {
			return false
		}
		i = skipSpace(obj, end)
		i = skipSpace(obj, i+1) // the colon
		end = skipValue(obj, i)
		if !fn(key, obj[i:end]) {
			return false
		}
		i = skipSpace(obj, end)
		if i >= len(obj) || obj[i] == '}' {
			return true
		}
		i = skipSpace(obj, i+1) // the comma
	}
	return true
}

// plainString returns the contents of the JSON string v when it is
// ASCII without escapes, read byte for byte as json.Unmarshal reads it;
// false when v is not a string, or has an escape or another byte (which
// json.Unmarshal may fold onto a field's name, or replace when it is not
// UTF-8).
func plainString(v []byte) ([]byte, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return nil, false
	}
	s := v[1 : len(v)-1]
	for _, c := range s {
		if c == '\\' || c >= 0x80 {
			return nil, false
		}
	}
	return s, true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the end of the value of valid JSON that starts at i.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	default:
		for i < len(b) && !strings.ContainsRune(",}] \t\r\n", rune(b[i])) {
			i++
		}
		return i
	}
}

// skipString returns the end of the string that starts at i.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}
