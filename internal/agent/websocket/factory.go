package websocket

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/switchback/switchback"
)

// Deps are what a Factory needs besides its configuration.
type Deps struct {
	// Registry, when set, holds the factory's live calls for the REST
	// hang-up (HangUpHandler); every factory of a process shares one.
	Registry *Registry
	// Log receives the agent's connection problems; nil discards them.
	Log *slog.Logger
	// Now is the clock of the media timestamps; nil is the system clock.
	Now switchback.Clock
	// TLSConfig, when set, is used for wss:// URLs (a private CA).
	TLSConfig *tls.Config
}

// Factory is the switchback.AgentFactory of one websocket agent of a
// tenant: it dials the agent for each call, before the call is answered,
// and gives the call to the fallback when the agent cannot take it.
type Factory struct {
	cfg          Config // with defaults, AccountSID included
	fallback     switchback.AgentFactory
	fallbackName string
	reg          *Registry
	log          *slog.Logger
	now          switchback.Clock
	client       *http.Client
	writeTimeout time.Duration
}

// dialFunc dials the agent's TCP connection; tests point it at their
// server whatever the URL's host.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

var _ switchback.AgentFactory = (*Factory)(nil)

// NewFactory returns the factory of a tenant's websocket agent. fallback
// takes the calls the agent cannot: the factory of the agent that serves
// cfg.Fallback.Task, which the caller resolves (it must be given when the
// task is set); when the configuration names no task, fallback must be nil
// and the call is handed back at once with cfg.Fallback.Output (SYSTEM
// when unset). cfg is checked first; the error names its fields under
// "websocket".
func NewFactory(tenantID string, cfg Config, fallback switchback.AgentFactory, deps Deps) (*Factory, error) {
	if err := cfg.Check("websocket"); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if cfg.AccountSID == "" {
		cfg.AccountSID = AccountSID(tenantID)
	}
	f := &Factory{cfg: cfg, reg: deps.Registry, log: deps.Log, now: deps.Now, writeTimeout: defaultWriteTimeout}
	switch {
	case cfg.Fallback.Task != "" && fallback == nil:
		return nil, fmt.Errorf("websocket.fallback.task: no agent given for task %q", cfg.Fallback.Task)
	case cfg.Fallback.Task == "" && fallback != nil:
		return nil, errors.New("websocket.fallback: an agent was given but the configuration names no task")
	case fallback != nil:
		f.fallback, f.fallbackName = fallback, "task "+cfg.Fallback.Task
	default:
		f.fallback, f.fallbackName = Immediate(cfg.Fallback.Output), "hand-back"
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	f.log = f.log.With("agent", "websocket", "url", redactedURL(cfg.URL))
	if f.now == nil {
		f.now = switchback.SystemClock
	}
	f.client = newHTTPClient(deps.TLSConfig, (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext)
	if f.reg != nil && cfg.AuthToken != "" {
		f.reg.addAccount(cfg.AccountSID, cfg.AuthToken)
	}
	return f, nil
}

// rawConnKey carries a *rawConn into the handshake's dial, so the session
// can cut the TCP connection when a close handshake or a write lingers:
// the WebSocket library bounds them by 5 s each, too long for a call.
type rawConnKey struct{}

type rawConn struct {
	mu sync.Mutex
	c  net.Conn
}

func (r *rawConn) set(c net.Conn) {
	r.mu.Lock()
	r.c = c
	r.mu.Unlock()
}

func (r *rawConn) close() {
	r.mu.Lock()
	if r.c != nil {
		r.c.Close()
	}
	r.mu.Unlock()
}

func newHTTPClient(tlsConfig *tls.Config, dial dialFunc) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// Each handshake gets its own connection: a refused one must not be
	// reused by the next call, whose TCP connection the session must hold.
	tr.DisableKeepAlives = true
	tr.TLSClientConfig = tlsConfig
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err == nil {
			if h, ok := ctx.Value(rawConnKey{}).(*rawConn); ok {
				h.set(c)
			}
		}
		return c, err
	}
	return &http.Client{
		Transport: tr,
		// Twilio does not follow a redirect of a stream URL; nor do we, so
		// the signature and headers go nowhere else.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// NewAgent dials the agent within the configured connect timeout, sends
// connected, start and switchback.context, and returns the agent of the
// call. When the agent cannot be reached, refuses the handshake or does not
// answer in time, it returns the fallback's agent instead, which records
// why when it runs (EventAgentFallback). It fails only when ctx ends first.
func (f *Factory) NewAgent(ctx context.Context, info *switchback.CallInfo) (switchback.Agent, error) {
	s, err := f.connect(ctx, info)
	if err == nil {
		return s, nil
	}
	if ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	reason := err.Error()
	f.log.Warn("websocket agent unavailable, its fallback takes the call",
		"transferId", info.TransferID, "reason", reason, "fallback", f.fallbackName)
	a, ferr := f.fallback.NewAgent(ctx, info)
	if ferr != nil {
		return nil, fmt.Errorf("websocket agent: %s; its fallback (%s): %w", reason, f.fallbackName, ferr)
	}
	return wrapFallback(a, reason, f.fallbackName), nil
}

// connect dials the agent and opens its stream; its error is the reason
// given for falling back, with no secret in it.
func (f *Factory) connect(ctx context.Context, info *switchback.CallInfo) (switchback.Agent, error) {
	timeout := f.cfg.ConnectTimeout.Duration()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	id := ids{account: f.cfg.AccountSID, call: CallSID(info.TenantID, info.TransferID),
		stream: streamSID(info.TenantID, info.TransferID, f.cfg.URL)}
	h := http.Header{}
	for name, v := range f.cfg.Headers {
		h.Set(name, v.Reveal())
	}
	if f.cfg.AuthToken != "" {
		h.Set(SignatureHeader, Signature(f.cfg.AuthToken.Reveal(), f.cfg.URL, nil))
	}
	h.Set("User-Agent", "Switchback")
	raw := &rawConn{}
	conn, resp, err := websocket.Dial(context.WithValue(cctx, rawConnKey{}, raw), f.cfg.URL,
		&websocket.DialOptions{HTTPClient: f.client, HTTPHeader: h})
	if err != nil {
		return nil, f.dialReason(cctx, ctx, resp, err, timeout)
	}
	conn.SetReadLimit(int64(f.cfg.MaxMessageBytes))
	s := newSession(f, info, id, conn, raw)
	if err := s.open(cctx); err != nil {
		raw.close()
		conn.CloseNow()
		if cctx.Err() != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("the agent did not take the stream's first messages within %v", timeout)
		}
		return nil, fmt.Errorf("the agent's connection failed as the stream started: %s", f.scrub(err))
	}
	s.run()
	if s.follows() {
		return &followingSession{s}, nil
	}
	return s, nil
}

// dialReason says in a few words, fit for the conversation's log, why the
// dial failed: the URL's query and the headers never appear in it.
func (f *Factory) dialReason(cctx, ctx context.Context, resp *http.Response, err error, timeout time.Duration) error {
	if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("the agent refused the WebSocket handshake: HTTP %d", resp.StatusCode)
	}
	if cctx.Err() != nil && ctx.Err() == nil {
		return fmt.Errorf("the agent did not answer within %v", timeout)
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return fmt.Errorf("the agent is unreachable: %s", f.scrub(opErr))
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return fmt.Errorf("the agent is unreachable: %s", f.scrub(dnsErr))
	}
	return fmt.Errorf("could not connect to the agent: %s", f.scrub(err))
}

// scrub keeps the URL's query, which may carry a token, out of an error.
func (f *Factory) scrub(err error) string {
	s := err.Error()
	u := f.cfg.URL
	for _, form := range []string{u, strings.Replace(u, "ws", "http", 1)} {
		s = strings.ReplaceAll(s, form, redactedURL(u))
	}
	return s
}

// open sends the stream's first messages: connected, start and
// switchback.context.
func (s *session) open(ctx context.Context) error {
	for _, msg := range s.firstMessages() {
		b, err := json.Marshal(msg)
		if err != nil {
			return err
		}
		if err := s.conn.Write(ctx, websocket.MessageText, b); err != nil {
			return err
		}
	}
	return nil
}

// firstMessages are connected, start (sequence number 1) and
// switchback.context.
func (s *session) firstMessages() []any {
	tracks := []string{trackInbound}
	if s.follows() {
		tracks = append(tracks, trackOutbound)
	}
	input := s.info.Input
	if input == nil {
		input = &switchback.InputContext{}
	}
	return []any{
		connectedMsg{Event: eventConnected, Protocol: "Call", Version: "1.0.0"},
		startMsg{
			Event: eventStart, SequenceNumber: s.nextSeq(), StreamSID: s.ids.stream,
			Start: startBody{
				AccountSID: s.ids.account, StreamSID: s.ids.stream, CallSID: s.ids.call, Tracks: tracks,
				MediaFormat:      mediaFormat{Encoding: "audio/x-mulaw", SampleRate: 8000, Channels: 1},
				CustomParameters: customParameters(s.info),
			},
		},
		contextMsg{
			Event: eventContext, StreamSID: s.ids.stream, TransferID: s.info.TransferID,
			ExternalConversationID: s.info.ExternalConversationID, Type: s.info.Type,
			ReturnTransferType: string(s.info.Return), From: s.info.From, To: s.info.To,
			InputContext: input, Conversation: encodeConversation(s.info.Conversation, s.info.TransferID),
		},
	}
}
