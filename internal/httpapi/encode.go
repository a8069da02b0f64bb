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
		b, status = []byte(`{"error":{"requestId":"","code":"503-02","message":"encode response"}}`), http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
