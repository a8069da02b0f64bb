package sip

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine outlives them: every
// goroutine of a leg, a call or the edge has an owner that stops it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
