package websocket

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestCheck(t *testing.T) {
	const path = "tenants[0].agents[1].websocket"
	tests := []struct {
		name string
		cfg  Config
		want []string // each error's text, in order; none when valid
	}{
		{name: "minimal", cfg: Config{URL: "ws://127.0.0.1:8765/media"}},
		{name: "everything", cfg: Config{
			URL: "wss://bot.example.com/twilio?x=1", AuthToken: "t", AccountSID: "AC0123456789abcdef0123456789ABCDEF",
			Headers:        map[string]Secret{"Authorization": "Bearer x"},
			ConnectTimeout: Duration(5 * time.Second), MaxMessageBytes: 1 << 20,
			Fallback:     Fallback{Task: "menu"},
			HangUpOutput: &Output{TransferType: "AGENT"},
		}},
		{name: "no url", cfg: Config{}, want: []string{path + ".url: is required"}},
		{name: "http url", cfg: Config{URL: "https://bot.example.com"}, want: []string{path + ".url: must be ws:// or wss://"}},
		{name: "credentials in url", cfg: Config{URL: "ws://u:p@bot.example.com"}, want: []string{path + ".url: must not carry credentials: use headers or authToken"}},
		{name: "no host", cfg: Config{URL: "ws:///x"}, want: []string{path + ".url: has no host"}},
		{name: "every mistake at once", cfg: Config{
			URL: "ftp://x", AccountSID: "AC12", ConnectTimeout: Duration(time.Minute), MaxMessageBytes: 10,
			Headers:      map[string]Secret{"Bad Name": "x", "Host": "x", "X-Ok": "a\r\nb"},
			Fallback:     Fallback{Task: "menu", Output: &Output{TransferType: "CALLER_DISCONNECT"}},
			HangUpOutput: &Output{},
		}, want: []string{
			path + ".url: must be ws:// or wss://",
			path + `.accountSid: must be AC and 32 hexadecimal digits, got "AC12"`,
			path + ".headers.Bad Name: is not a valid header name",
			path + ".headers.Host: is set by Switchback itself",
			path + ".headers.X-Ok: contains a line break or NUL",
			path + ".connectTimeout: must be between 0 (the default, 3s) and 30s, got 1m0s",
			path + ".maxMessageBytes: must be between 4096 and 16777216, got 10",
			path + ".fallback: set task or output, not both",
			path + `.fallback.output.transferType: must be AGENT or SYSTEM, got "CALLER_DISCONNECT"`,
			path + `.hangUpOutput.transferType: must be AGENT or SYSTEM, got ""`,
		}},
		{name: "signature header", cfg: Config{URL: "ws://x", Headers: map[string]Secret{"x-twilio-signature": "forged"}},
			want: []string{path + ".headers.x-twilio-signature: is set by Switchback itself"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Check(path)
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("Check =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c := Config{URL: "ws://x"}.WithDefaults()
	if c.ConnectTimeout.Duration() != 3*time.Second || c.MaxMessageBytes != DefaultMaxMessageBytes || !*c.ListenAfterInviteReturn {
		t.Errorf("defaults = %+v", c)
	}
	off := false
	if c := (Config{ListenAfterInviteReturn: &off}).WithDefaults(); *c.ListenAfterInviteReturn {
		t.Error("listenAfterInviteReturn: false was overridden")
	}
}

func TestYAML(t *testing.T) {
	const doc = `
url: wss://bot.example.com/twilio
authToken: tok-secret
headers:
  Authorization: Bearer bearer-secret
connectTimeout: 2s
fallback:
  task: menu
hangUpOutput:
  transferType: AGENT
  transferVariables: {ended: bot}
listenAfterInviteReturn: false
`
	var c Config
	if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
		t.Fatal(err)
	}
	if c.AuthToken.Reveal() != "tok-secret" || c.Headers["Authorization"].Reveal() != "Bearer bearer-secret" ||
		c.ConnectTimeout.Duration() != 2*time.Second || c.Fallback.Task != "menu" || *c.ListenAfterInviteReturn ||
		c.HangUpOutput.TransferVariables["ended"] != "bot" {
		t.Errorf("decoded %+v", c)
	}
	if err := c.Check("websocket"); err != nil {
		t.Error(err)
	}
	var bad Config
	if err := yaml.Unmarshal([]byte("connectTimeout: 3\n"), &bad); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("a bare number: %v", err)
	}
}

// TestSecretsRedacted: no way of printing, logging or encoding a Config
// shows its token or header values.
func TestSecretsRedacted(t *testing.T) {
	c := Config{URL: "wss://bot.example.com/twilio?key=query-secret", AuthToken: "tok-secret",
		Headers: map[string]Secret{"Authorization": "Bearer bearer-secret"}}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "websocket", c, "token", c.AuthToken)
	j, _ := json.Marshal(c)
	y, _ := yaml.Marshal(c)
	outputs := map[string]string{
		"%v": fmt.Sprintf("%v", c), "%+v": fmt.Sprintf("%+v", c), "%#v": fmt.Sprintf("%#v", c), "%s": fmt.Sprintf("%s", c),
		"slog": logged.String(), "json": string(j), "yaml": string(y),
		"%v of the fields": fmt.Sprintf("%v %v", c.AuthToken, c.Headers),
	}
	for how, out := range outputs {
		for _, secret := range []string{"tok-secret", "bearer-secret", "query-secret"} {
			if strings.Contains(out, secret) && !(secret == "query-secret" && (how == "json" || how == "yaml" || how == "%#v" || how == "%+v")) {
				t.Errorf("%s shows %s: %s", how, secret, out)
			}
		}
	}
	// The URL's query stays in encodings, which are configuration, and
	// never reaches a log or a reason.
	if strings.Contains(logged.String(), "query-secret") || strings.Contains(c.String(), "query-secret") {
		t.Error("the URL's query was logged")
	}
}
