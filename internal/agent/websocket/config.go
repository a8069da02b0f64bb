package websocket

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/switchback/switchback"
)

// Defaults and bounds of a Config.
const (
	// DefaultConnectTimeout bounds the dial, the handshake and the first
	// messages. The call is not answered meanwhile, so it is kept short.
	DefaultConnectTimeout = 3 * time.Second
	// MaxConnectTimeout stays under the 32 s an INVITE transaction lives
	// (RFC 3261 Timer B), so the caller's side never gives up first.
	MaxConnectTimeout = 30 * time.Second
	// DefaultMaxMessageBytes is the largest message read from an agent:
	// about 24 s of audio in one media message.
	DefaultMaxMessageBytes = 256 << 10
	// MinMaxMessageBytes leaves room for a media message of a few frames
	// and an ordinary hand-back.
	MinMaxMessageBytes = 4 << 10
	// MaxMaxMessageBytes bounds what one agent can make Switchback hold.
	MaxMaxMessageBytes = 16 << 20
)

// Config is a websocket agent of a tenant, as the YAML file has it under
// tenants[i].agents[j].websocket. Its zero values take the defaults above;
// see WithDefaults.
type Config struct {
	// URL is the agent's ws:// or wss:// URL. Switchback dials it for every
	// call, as Twilio dials a <Stream> URL.
	URL string `yaml:"url"`
	// AuthToken, when set, signs each handshake with X-Twilio-Signature
	// and is the password of the Twilio-style REST hang-up.
	AuthToken Secret `yaml:"authToken,omitempty"`
	// AccountSID is the accountSid the agent is told and the user name of
	// the REST hang-up; default "AC" and 32 hex digits derived from the
	// tenant id, stable across restarts and nodes.
	AccountSID string `yaml:"accountSid,omitempty"`
	// Headers are added to the handshake, e.g. Authorization: Bearer ....
	Headers map[string]Secret `yaml:"headers,omitempty"`
	// ConnectTimeout bounds the dial; default DefaultConnectTimeout.
	ConnectTimeout Duration `yaml:"connectTimeout,omitempty"`
	// Fallback takes the call when the agent cannot be reached, drops, or
	// closes without a hand-back.
	Fallback Fallback `yaml:"fallback,omitempty"`
	// HangUpOutput is the output context of a call the agent ends by the
	// Twilio-style REST hang-up; default transferType SYSTEM.
	HangUpOutput *Output `yaml:"hangUpOutput,omitempty"`
	// ListenAfterInviteReturn keeps the connection open after a hand-back
	// by INVITE: the agent hears both legs until the call ends. Default
	// true.
	ListenAfterInviteReturn *bool `yaml:"listenAfterInviteReturn,omitempty"`
	// MaxMessageBytes is the largest message accepted from the agent; a
	// larger one closes the connection (status 1009) and the fallback
	// takes over. Default DefaultMaxMessageBytes.
	MaxMessageBytes int `yaml:"maxMessageBytes,omitempty"`
}

// Fallback is what takes a call its websocket agent cannot: another agent
// of the tenant, by the task it serves, or an immediate hand-back with
// Output. With neither, the call is handed back as SYSTEM.
type Fallback struct {
	Task   string  `yaml:"task,omitempty"`
	Output *Output `yaml:"output,omitempty"`
}

// Output is an output context written in the configuration.
type Output struct {
	TransferType string `yaml:"transferType"` // AGENT or SYSTEM
	// CurrentTaskName is outputContext.currentTaskName; "" is the input's
	// taskName.
	CurrentTaskName    string            `yaml:"currentTaskName,omitempty"`
	ReferenceVariables map[string]string `yaml:"referenceVariables,omitempty"`
	TransferVariables  map[string]string `yaml:"transferVariables,omitempty"`
}

// context is the output context o stands for on a call whose input is in.
func (o *Output) context(in *switchback.InputContext) *switchback.OutputContext {
	out := &switchback.OutputContext{TransferType: switchback.TransferSystem}
	if o != nil {
		out.TransferType = switchback.OutputTransferType(o.TransferType)
		out.CurrentTaskName = o.CurrentTaskName
		out.ReferenceVariables = copyMap(o.ReferenceVariables)
		out.TransferVariables = copyMap(o.TransferVariables)
	}
	if out.CurrentTaskName == "" && in != nil {
		out.CurrentTaskName = in.TaskName
	}
	return out
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// WithDefaults returns c with its zero values set to the defaults.
func (c Config) WithDefaults() Config {
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = Duration(DefaultConnectTimeout)
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.ListenAfterInviteReturn == nil {
		t := true
		c.ListenAfterInviteReturn = &t
	}
	return c
}

// Headers Switchback sets itself, or that the WebSocket handshake owns.
var reservedHeaders = map[string]bool{
	"Host": true, "Connection": true, "Upgrade": true, "Content-Length": true,
	"Transfer-Encoding": true, "Sec-Websocket-Key": true, "Sec-Websocket-Version": true,
	"Sec-Websocket-Extensions": true, "Sec-Websocket-Protocol": true, "Sec-Websocket-Accept": true,
	"X-Twilio-Signature": true,
}

// Check reports every mistake in c at once (errors.Join), each naming its
// YAML path under path, as in
// "tenants[0].agents[1].websocket.url: must be ws:// or wss://". Zero
// values are fine: they take the defaults. Secrets are never quoted.
func (c Config) Check(path string) error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", path, field, fmt.Sprintf(format, args...)))
	}
	if c.URL == "" {
		add("url", "is required")
	} else if reason := checkURL(c.URL); reason != "" {
		add("url", "%s", reason)
	}
	if len(c.AuthToken) > 256 {
		add("authToken", "is longer than 256 characters")
	}
	if c.AccountSID != "" && !validSID("AC", c.AccountSID) {
		add("accountSid", "must be AC and 32 hexadecimal digits, got %q", c.AccountSID)
	}
	names := make([]string, 0, len(c.Headers))
	for name := range c.Headers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		field := "headers." + name
		switch {
		case !validHeaderName(name):
			add(field, "is not a valid header name")
		case reservedHeaders[http.CanonicalHeaderKey(name)]:
			add(field, "is set by Switchback itself")
		case strings.ContainsAny(string(c.Headers[name]), "\r\n\x00"):
			add(field, "contains a line break or NUL")
		}
	}
	if d := c.ConnectTimeout.Duration(); d < 0 || d > MaxConnectTimeout {
		add("connectTimeout", "must be between 0 (the default, %v) and %v, got %v", DefaultConnectTimeout, MaxConnectTimeout, d)
	}
	if n := c.MaxMessageBytes; n != 0 && (n < MinMaxMessageBytes || n > MaxMaxMessageBytes) {
		add("maxMessageBytes", "must be between %d and %d, got %d", MinMaxMessageBytes, MaxMaxMessageBytes, n)
	}
	if c.Fallback.Task != "" && c.Fallback.Output != nil {
		add("fallback", "set task or output, not both")
	}
	if err := c.Fallback.Output.check(); err != "" {
		add("fallback.output.transferType", "%s", err)
	}
	if err := c.HangUpOutput.check(); err != "" {
		add("hangUpOutput.transferType", "%s", err)
	}
	return errors.Join(errs...)
}

func (o *Output) check() string {
	if o == nil {
		return ""
	}
	switch switchback.OutputTransferType(o.TransferType) {
	case switchback.TransferAgent, switchback.TransferSystem:
		return ""
	}
	return fmt.Sprintf("must be AGENT or SYSTEM, got %q", o.TransferType)
}

// checkURL returns why u cannot be an agent's URL, or "".
func checkURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "is not a URL"
	}
	switch p.Scheme {
	case "ws", "wss":
	default:
		return "must be ws:// or wss://"
	}
	if p.Host == "" {
		return "has no host"
	}
	if p.User != nil {
		// A password in the URL would be logged with it; headers are not.
		return "must not carry credentials: use headers or authToken"
	}
	if p.Fragment != "" {
		return "must not have a fragment"
	}
	return ""
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validSID reports whether s is prefix and 32 hexadecimal digits, as
// Twilio's SIDs are.
func validSID(prefix, s string) bool {
	if len(s) != len(prefix)+32 || !strings.HasPrefix(s, prefix) {
		return false
	}
	for i := len(prefix); i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// redactedURL is u without its query, which may carry a token, for logs
// and recorded reasons.
func redactedURL(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		return u[:i] + "?REDACTED"
	}
	return u
}

// String shows c with its secrets redacted and its URL without query.
func (c Config) String() string {
	return fmt.Sprintf("websocket agent %s (authToken %s, %d headers, connectTimeout %v)",
		redactedURL(c.URL), c.AuthToken.String(), len(c.Headers), c.WithDefaults().ConnectTimeout)
}

// LogValue logs c without its secrets.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("url", redactedURL(c.URL)),
		slog.Bool("signed", c.AuthToken != ""),
		slog.Int("headers", len(c.Headers)),
	)
}

// Secret is a credential of the configuration. Printed, logged or encoded
// to JSON or YAML it reads REDACTED, so no dump of a Config shows it.
type Secret string

// Redacted is what a set Secret prints as.
const Redacted = "REDACTED"

// String returns Redacted, or "" when the secret is not set.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return Redacted
}

// GoString keeps %#v from printing the secret.
func (s Secret) GoString() string { return fmt.Sprintf("%q", s.String()) }

// LogValue keeps slog from printing the secret.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps JSON and YAML encoders from writing the secret.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a secret as written.
func (s *Secret) UnmarshalText(b []byte) error { *s = Secret(b); return nil }

// Reveal returns the secret itself, for the handshake and the hang-up's
// constant-time compare only.
func (s Secret) Reveal() string { return string(s) }

// Duration is a time.Duration written with a unit ("3s", "500ms") in YAML.
// A bare number is refused: "3" could mean seconds or nanoseconds.
type Duration time.Duration

// Duration returns d as a time.Duration.
func (d Duration) Duration() time.Duration { return time.Duration(d) }

// String formats d as time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes d as its String.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a duration such as "3s".
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("%q is not a duration: write it with a unit, like 3s or 500ms", text)
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML parses a scalar such as 3s, naming the line of a bad one.
// It returns a *yaml.TypeError so the decoder goes on to the file's other
// mistakes.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: a duration must be a value like 3s", n.Line)}}
	}
	if err := d.UnmarshalText([]byte(n.Value)); err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	return nil
}
