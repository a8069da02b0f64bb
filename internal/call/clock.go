package call

import "time"

// Clock tells the time and makes timers. Every wait of the runtime goes
// through it, so its tests move time instead of sleeping.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed, and a
	// function that releases the timer early.
	After(d time.Duration) (<-chan time.Time, func())
}

// wallClock is the system clock, in UTC.
type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now().UTC() }

func (wallClock) After(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}
