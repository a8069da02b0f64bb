package config

import _ "embed"

//go:embed example.yaml
var example string

// Example returns a complete configuration file with a comment on every
// field: its meaning, its default and its environment variable. Load reads it
// as is; it is shipped as docs/config.example.yaml.
func Example() string { return example }
