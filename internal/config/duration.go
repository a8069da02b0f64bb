package config

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written with a unit ("10s", "1m30s", "250ms")
// in YAML and in environment variables. A bare number is refused rather than
// guessed at: "10" could mean seconds or nanoseconds.
type Duration time.Duration

// Duration returns d as a time.Duration.
func (d Duration) Duration() time.Duration { return time.Duration(d) }

// String formats d like time.Duration does, e.g. "1m30s".
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes d as its String, so YAML and JSON show "10s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a duration such as "10s"; Load uses it for
// environment variables.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("%q is not a duration: write it with a unit, like 10s, 1m30s or 250ms", text)
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML parses a YAML scalar such as 10s, reporting a bad one with its
// line. It returns a *yaml.TypeError so the decoder goes on and reports the
// file's other mistakes too.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{
			fmt.Sprintf("line %d: a duration must be a value like 10s, not a list or mapping", n.Line),
		}}
	}
	if err := d.UnmarshalText([]byte(n.Value)); err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	return nil
}
