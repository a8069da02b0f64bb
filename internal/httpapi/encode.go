package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sync"
)

var encodeBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// writeJSON is the one place responses are encoded.
func writeJSON(w http.ResponseWriter, status int, v any) {
	buf := encodeBuffers.Get().(*bytes.Buffer)
	defer func() { buf.Reset(); encodeBuffers.Put(buf) }()
	err := json.NewEncoder(buf).Encode(v) // Encode ends the body with a newline
	b := buf.Bytes()
	if err != nil {
		// Only our own types are encoded; this is a bug, not bad input.
		b, _ = json.Marshal(errorEnvelope{errorBody{RequestID: w.Header().Get("X-Request-Id"), Code: "503-02", Message: "encode response"}})
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}
