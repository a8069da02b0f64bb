//go:build race

package media

// raceEnabled is set when the tests run with -race, under which sync.Pool
// drops some of what it is given, on purpose, so a pooled block is now and
// then allocated afresh.
const raceEnabled = true
