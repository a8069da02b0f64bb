package httpapi

import (
	"encoding/json"
	"net/http"
)

// writeJSON is the one place responses are encoded.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own types are encoded; this is a bug, not bad input.
		b, _ = json.Marshal(errorEnvelope{errorBody{RequestID: w.Header().Get("X-Request-Id"), Code: "503-02", Message: "encode response"}})
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
