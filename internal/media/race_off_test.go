//go:build !race

package media

// raceEnabled is set when the tests run with -race (see race_on_test.go).
const raceEnabled = false
