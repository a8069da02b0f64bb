package sip

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// maxLoggedBytes is how much of a message, or of any other string sipgo
// puts in a log line, reaches the log.
const maxLoggedBytes = 256

// escapeBytes renders data for a log line: printable ASCII as it is, CR,
// LF, tab and backslash as \r, \n, \t, \\, and every other byte as \xNN,
// cut after max bytes with a note of how many more there were. Invalid
// UTF-8 and control characters from the network thus reach the log as
// text a reader can trust.
func escapeBytes[T string | []byte](data T, limit int) string {
	n := min(len(data), limit)
	b := make([]byte, 0, n+n/4+24)
	for i := 0; i < n; i++ {
		switch c := data[i]; {
		case c == '\\':
			b = append(b, '\\', '\\')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\t':
			b = append(b, '\\', 't')
		case c >= 0x20 && c < 0x7f:
			b = append(b, c)
		default:
			b = append(b, '\\', 'x', "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
		}
	}
	if len(data) > n {
		b = append(b, "... ("...)
		b = strconv.AppendInt(b, int64(len(data)-n), 10)
		b = append(b, " more bytes)"...)
	}
	return string(b)
}

// quietLibraryMessages are sipgo lines that report nothing an operator can
// act on, logged at debug level whatever their own: a UDP connection
// released twice while the transport shuts down says so with a warning.
var quietLibraryMessages = map[string]bool{
	"UDP ref went negative on try close": true,
	"TCP ref went negative":              true,
	"connection pool not clean cleanup":  true,
}

// libraryLines is how many of sipgo's lines at warning level a second may
// reach the log, and how many at once: any peer can make sipgo complain.
const (
	libraryLinesRate  = 10
	libraryLinesBurst = 20
)

// libraryHandler is the slog handler sipgo logs through: its lines go to
// Switchback's own handler (so they share its format, its destination and
// its level) with every string cut to maxLoggedBytes and escaped, its
// levels lowered one step (sipgo reports a peer's malformed message as an
// error; to Switchback it is a warning, and sipgo's info lines are detail),
// its few pointless lines quietened to debug, and its warnings thinned to
// libraryLinesRate a second, counting what was held back.
type libraryHandler struct {
	next  slog.Handler
	limit *libraryLimit
}

// libraryLimit is shared by a libraryHandler and those derived from it.
type libraryLimit struct {
	mu   sync.Mutex
	b    bucket
	held int
}

func newLibraryHandler(next slog.Handler) *libraryHandler {
	return &libraryHandler{next: next, limit: &libraryLimit{}}
}

// libraryLevel is the level a sipgo line is logged at.
func libraryLevel(l slog.Level) slog.Level {
	if l >= slog.LevelWarn {
		return slog.LevelWarn
	}
	return slog.LevelDebug
}

// Enabled reports whether the next handler takes lines at the level a
// sipgo line of level l is logged at.
func (h *libraryHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, libraryLevel(l))
}

// Handle logs r, its level lowered and its strings cut and escaped.
func (h *libraryHandler) Handle(ctx context.Context, r slog.Record) error {
	level := libraryLevel(r.Level)
	if quietLibraryMessages[r.Message] {
		level = slog.LevelDebug
	}
	if !h.next.Enabled(ctx, level) {
		return nil
	}
	held := 0
	if level >= slog.LevelWarn {
		h.limit.mu.Lock()
		if !h.limit.b.take(time.Now().UnixNano(), libraryLinesRate, libraryLinesBurst) {
			h.limit.held++
			h.limit.mu.Unlock()
			return nil
		}
		held, h.limit.held = h.limit.held, 0
		h.limit.mu.Unlock()
	}
	out := slog.NewRecord(r.Time, level, escapeBytes(r.Message, maxLoggedBytes), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(sanitizeAttr(a))
		return true
	})
	if held > 0 {
		out.AddAttrs(slog.Int("suppressed", held))
	}
	return h.next.Handle(ctx, out)
}

// WithAttrs returns a handler whose lines carry attrs, sanitized.
func (h *libraryHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		clean[i] = sanitizeAttr(a)
	}
	return &libraryHandler{next: h.next.WithAttrs(clean), limit: h.limit}
}

// WithGroup returns a handler whose attributes go in the group name.
func (h *libraryHandler) WithGroup(name string) slog.Handler {
	return &libraryHandler{next: h.next.WithGroup(name), limit: h.limit}
}

// sanitizeAttr cuts and escapes the strings in a (errors and other values
// that print themselves included).
func sanitizeAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, escapeBytes(v.String(), maxLoggedBytes))
	case slog.KindGroup:
		g := v.Group()
		clean := make([]any, len(g))
		for i, ga := range g {
			clean[i] = sanitizeAttr(ga)
		}
		return slog.Group(a.Key, clean...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, escapeBytes(x.Error(), maxLoggedBytes))
		case fmt.Stringer:
			return slog.String(a.Key, escapeBytes(x.String(), maxLoggedBytes))
		case []byte:
			return slog.String(a.Key, escapeBytes(x, maxLoggedBytes))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// libraryTarget is the handler of the Edge built last: sipgo's few lines
// that do not come through a logger it was given (sip.DefaultLogger, read
// by its connections) go there.
var libraryTarget atomic.Pointer[slog.Handler]

// forwardHandler sends each line to libraryTarget, or to slog's default
// handler before any Edge is built.
type forwardHandler struct{ attrs []slog.Attr }

func (f forwardHandler) target() slog.Handler {
	if h := libraryTarget.Load(); h != nil {
		return *h
	}
	return slog.Default().Handler()
}

// Enabled reports whether the current target takes lines at level l.
func (f forwardHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return f.target().Enabled(ctx, l)
}

// Handle passes r to the current target.
func (f forwardHandler) Handle(ctx context.Context, r slog.Record) error {
	r.AddAttrs(f.attrs...)
	return f.target().Handle(ctx, r)
}

// WithAttrs returns a handler that adds attrs to every line.
func (f forwardHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return forwardHandler{attrs: append(f.attrs[:len(f.attrs):len(f.attrs)], attrs...)}
}

// WithGroup is ignored: sipgo opens no groups.
func (f forwardHandler) WithGroup(string) slog.Handler { return f }

// configureLibrary sets sipgo's process-wide settings once, before the
// first Edge starts any goroutine that reads them:
//
//   - sip.DefaultLogger, which sipgo's connections log through whatever
//     logger the rest of it was given, goes through libraryHandler to the
//     log of the latest Edge;
//   - sip.UDPMTUSize: sipgo refuses to send a UDP message over this less
//     200 bytes (1300 by default) and says so only with an error, so a
//     response echoing long Via and Record-Route headers would be lost. A
//     datagram may be up to 64 KiB (IP fragments it); requests Switchback
//     sends stay small.
//
// A program that runs another sipgo user agent besides Switchback's (the
// softphone of `switchback call` in `switchback demo`) builds its Edge
// first.
var configureLibrary = sync.OnceFunc(func() {
	sip.SetDefaultLogger(slog.New(newLibraryHandler(forwardHandler{})))
	sip.UDPMTUSize = 65000
})
