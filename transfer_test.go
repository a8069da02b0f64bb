package switchback_test

import (
	"strings"
	"testing"

	"github.com/switchback/switchback"
)

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{
		"a": true, "A-1._~z": true, "...": true, ".a": true, strings.Repeat("x", switchback.MaxIDLength): true,
		"": false, ".": false, "..": false, "a b": false, "a/b": false, "é": false,
		strings.Repeat("x", switchback.MaxIDLength+1): false,
	} {
		if got := switchback.ValidID(id); got != want {
			t.Errorf("ValidID(%q) = %v, want %v", id, got, want)
		}
	}
}
