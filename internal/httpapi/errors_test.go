package httpapi

import (
	"net/http"
	"testing"

	"github.com/switchback/switchback"
)

func TestStatusTableCoversEveryCode(t *testing.T) {
	for _, tt := range []struct {
		code   string
		status int
		spec   string
	}{
		{switchback.EINVALID, http.StatusBadRequest, "400-02"},
		{switchback.EUNAUTHORIZED, http.StatusUnauthorized, "401-01"},
		{switchback.EFORBIDDEN, http.StatusForbidden, "403-01"},
		{switchback.ENOTFOUND, http.StatusNotFound, "404-01"},
		{switchback.ECONFLICT, http.StatusConflict, "409-01"},
		{switchback.EGONE, http.StatusConflict, "409-02"},
		{switchback.ETOOLARGE, http.StatusRequestEntityTooLarge, "413-01"},
		{switchback.EUNPROCESSABLE, http.StatusUnprocessableEntity, "422-01"},
		{switchback.ERATELIMIT, http.StatusTooManyRequests, "429-01"},
		{switchback.EEXHAUSTED, http.StatusServiceUnavailable, "503-01"},
		{switchback.EUNAVAILABLE, http.StatusServiceUnavailable, "503-02"},
		{switchback.EBUSY, http.StatusServiceUnavailable, "503-02"},
		{switchback.EFENCED, http.StatusServiceUnavailable, "503-02"},
		{switchback.EINTERNAL, http.StatusServiceUnavailable, "503-02"},
	} {
		m, ok := statusOf[tt.code]
		if !ok {
			t.Errorf("no HTTP status for %s", tt.code)
		} else if m.status != tt.status || m.code != tt.spec {
			t.Errorf("%s maps to %d %s, want %d %s", tt.code, m.status, m.code, tt.status, tt.spec)
		}
	}
}
