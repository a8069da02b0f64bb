// Package echo is a small voice agent that speaks Switchback's websocket
// wire (Twilio Media Streams and the switchback.* extensions) as a server:
// it plays a greeting and marks its end, echoes what the caller says, and
// hands the call back when the caller presses a digit. It is the agent of
// `switchback demo --agent websocket` and of the streaming benchmark, and a
// reference for writing one.
package echo

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	ws "github.com/coder/websocket"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/agent/websocket"
	"github.com/switchback/switchback/internal/media"
)

// Options configure the echo agent.
type Options struct {
	// Greeting is played when a stream starts: 8 kHz mono 16-bit PCM; nil
	// for none (the benchmark measures the echo alone).
	Greeting []int16
	// AuthToken, when set, refuses a handshake whose X-Twilio-Signature is
	// not the signature of URL by it.
	AuthToken string
	// URL is the agent's URL as Switchback is configured with it: what the
	// signature signs.
	URL string
	// Log receives one line per stream; nil discards.
	Log *slog.Logger
	// OnEcho, when set, is called after each frame is echoed, with its
	// payload as it came (base64 µ-law), when its message had been read
	// and when the echo had been written: the agent's own time, which the
	// streaming benchmark takes off the round trip it measures.
	OnEcho func(payload string, read, written time.Time)
}

// Handler is the echo agent: an http.Handler that takes WebSocket
// connections, one stream each.
type Handler struct {
	opts Options
	log  *slog.Logger
	// Echoed counts the media messages echoed, across streams.
	Echoed atomic.Int64
}

// New returns the echo agent.
func New(o Options) *Handler {
	h := &Handler{opts: o, log: o.Log}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	return h
}

// message is every field of the wire the echo agent reads.
type message struct {
	Event     string `json:"event"`
	StreamSID string `json:"streamSid"`
	Start     *struct {
		StreamSID string `json:"streamSid"`
	} `json:"start"`
	Media *struct {
		Track   string `json:"track"`
		Payload string `json:"payload"`
	} `json:"media"`
	DTMF *struct {
		Track string `json:"track"`
		Digit string `json:"digit"`
	} `json:"dtmf"`
	Mark *struct {
		Name string `json:"name"`
	} `json:"mark"`
}

// ServeHTTP runs one stream: until stop, or the connection's end.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.opts.AuthToken != "" &&
		!websocket.ValidSignature(h.opts.AuthToken, h.opts.URL, nil, r.Header.Get(websocket.SignatureHeader)) {
		http.Error(w, "bad signature", http.StatusForbidden)
		return
	}
	c, err := ws.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	// The stream lives until Switchback stops it or the connection ends,
	// not with the request's context.
	ctx := context.Background()
	var stream string
	handedBack := false
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return
		}
		read := time.Now()
		var m message
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		switch m.Event {
		case "start":
			if m.Start != nil {
				stream = m.Start.StreamSID
			}
			h.log.Info("echo agent: stream started", "streamSid", stream)
			if err := h.greet(ctx, c, stream); err != nil {
				return
			}
		case "media":
			// Only the caller is echoed: once bridged after an INVITE
			// hand-back the caller hears the return leg, not the agent.
			if m.Media == nil || m.Media.Track != "inbound" || handedBack {
				continue
			}
			// The payload goes back as it came: no decode, no re-encode,
			// so the benchmark measures Switchback, not the agent.
			if err := write(ctx, c, map[string]any{"event": "media", "streamSid": stream,
				"media": map[string]string{"payload": m.Media.Payload}}); err != nil {
				return
			}
			h.Echoed.Add(1)
			if h.opts.OnEcho != nil {
				h.opts.OnEcho(m.Media.Payload, read, time.Now())
			}
		case "dtmf":
			if m.DTMF == nil || m.DTMF.Track != "inbound_track" || handedBack {
				continue
			}
			handedBack = true
			if err := h.handBack(ctx, c, stream, m.DTMF.Digit); err != nil {
				return
			}
		case "stop":
			h.log.Info("echo agent: stream stopped", "streamSid", stream)
			c.Close(ws.StatusNormalClosure, "")
			return
		}
	}
}

// greet queues the greeting at once, ahead of real time (Switchback paces
// it), then a mark Switchback echoes when it has played.
func (h *Handler) greet(ctx context.Context, c *ws.Conn, stream string) error {
	if len(h.opts.Greeting) == 0 {
		return nil
	}
	ulaw := make([]byte, len(h.opts.Greeting))
	media.EncodeULaw(ulaw, h.opts.Greeting)
	for i := 0; i < len(ulaw); i += 160 {
		chunk := ulaw[i:min(i+160, len(ulaw))]
		if err := write(ctx, c, map[string]any{"event": "media", "streamSid": stream,
			"media": map[string]string{"payload": base64.StdEncoding.EncodeToString(chunk)}}); err != nil {
			return err
		}
	}
	return write(ctx, c, map[string]any{"event": "mark", "streamSid": stream, "mark": map[string]string{"name": "greeting"}})
}

// handBack says what the caller did and hands the call back to a human
// agent, with the digit pressed.
func (h *Handler) handBack(ctx context.Context, c *ws.Conn, stream, digit string) error {
	if err := write(ctx, c, map[string]any{"event": "switchback.transcript", "streamSid": stream,
		"role": "caller", "text": "pressed " + digit, "final": true}); err != nil {
		return err
	}
	h.log.Info("echo agent: hands the call back", "streamSid", stream, "digit", digit)
	return write(ctx, c, map[string]any{"event": "switchback.handback", "streamSid": stream,
		"outputContext": switchback.OutputContext{
			TransferType:      switchback.TransferAgent,
			TransferVariables: map[string]string{"digit": digit, "agent": "echo"},
		},
		"finishAudio": true,
	})
}

func write(ctx context.Context, c *ws.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.Write(ctx, ws.MessageText, b)
}
