package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ServerOptions are the limits the API's HTTP server puts on its clients,
// so that no client, authenticated or not, can hold a connection, a
// goroutine and a file descriptor (shared with SIP and RTP) for long
// without sending a request or reading its answer.
type ServerOptions struct {
	// ReadHeaderTimeout is how long a client has to send a request's
	// headers, from the connection's start or the end of the previous
	// request.
	ReadHeaderTimeout time.Duration
	// ReadBodyTimeout is how long a client has to send a request's body
	// once its headers are in; past it the request is 408-01. It is
	// counted per request rather than as http.Server.ReadTimeout, which
	// would also cancel a wait (?waitForStatus) still in progress.
	ReadBodyTimeout time.Duration
	// WriteTimeout is how long writing an answer may take, counted from
	// its first byte: a wait may hold a request for up to its timeout
	// before that, so http.Server.WriteTimeout, counted from the request's
	// start, would cut waits short.
	WriteTimeout time.Duration
	// IdleTimeout is how long a kept-alive connection may wait for its
	// next request.
	IdleTimeout time.Duration
	// MaxHeaderBytes caps the size of a request's headers (431 beyond).
	MaxHeaderBytes int
	// MaxConnections caps the connections open at once. Past it, new
	// connections wait in the listen queue until one closes. 0: no cap.
	MaxConnections int
	// Log receives what net/http itself reports (accept errors and the
	// like); nil discards it.
	Log *slog.Logger
}

// NewHTTPServer returns the HTTP server that serves handler within o, and
// the listener to give its Serve: ln capped at o.MaxConnections, whose
// connections turn the plain-text errors net/http answers by itself
// (malformed requests, 431, 501, 505, 417) into the API's error envelope.
func NewHTTPServer(handler http.Handler, ln net.Listener, o ServerOptions) (*http.Server, net.Listener) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := &http.Server{
		Handler:           withDeadlines(handler, o.ReadBodyTimeout, o.WriteTimeout),
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    o.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return srv, newAPIListener(ln, o.MaxConnections)
}

// withDeadlines gives each request a deadline for its body, and each
// answer one for its writing, on the connection.
func withDeadlines(next http.Handler, body, write time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		// net/http clears the read deadline itself once the body is read
		// to its end (it then watches the connection for the client going
		// away), so a wait that follows is not cut short. A body never
		// read keeps the deadline, which then bounds how long net/http
		// drains it after the handler.
		if body > 0 && r.Body != nil && r.Body != http.NoBody {
			rc.SetReadDeadline(time.Now().Add(body))
		}
		if write > 0 {
			w = &writeDeadline{ResponseWriter: w, rc: rc, d: write}
		}
		next.ServeHTTP(w, r)
	})
}

// writeDeadline sets the connection's write deadline when the answer
// starts. net/http clears it after each request.
type writeDeadline struct {
	http.ResponseWriter
	rc  *http.ResponseController
	d   time.Duration
	set bool
}

func (w *writeDeadline) start() {
	if !w.set {
		w.set = true
		w.rc.SetWriteDeadline(time.Now().Add(w.d))
	}
}

func (w *writeDeadline) WriteHeader(code int) {
	if code >= 200 { // not for an informational answer such as 100 Continue
		w.start()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *writeDeadline) Write(b []byte) (int, error) {
	w.start()
	return w.ResponseWriter.Write(b)
}

// Flush lets a waiting answer be flushed through.
func (w *writeDeadline) Flush() {
	w.start()
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets an http.ResponseController reach the connection.
func (w *writeDeadline) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// apiListener caps the connections open at once and wraps each in an
// apiConn.
type apiListener struct {
	net.Listener
	slots     chan struct{} // nil: no cap
	closed    chan struct{}
	closeOnce sync.Once
}

func newAPIListener(ln net.Listener, max int) *apiListener {
	l := &apiListener{Listener: ln, closed: make(chan struct{})}
	if max > 0 {
		l.slots = make(chan struct{}, max)
	}
	return l
}

// Accept takes a slot before it accepts, so that past the cap a new
// connection waits in the kernel's listen queue, bounded by its backlog,
// instead of costing a goroutine and a descriptor here.
func (l *apiListener) Accept() (net.Conn, error) {
	if l.slots != nil {
		select {
		case l.slots <- struct{}{}:
		case <-l.closed:
			return nil, net.ErrClosed
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		l.release()
		return nil, err
	}
	return &apiConn{Conn: c, release: l.release}, nil
}

func (l *apiListener) release() {
	if l.slots != nil {
		<-l.slots
	}
}

// Close stops Accept, including one waiting for a slot.
func (l *apiListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// apiConn is one accepted connection: it gives its slot back once closed,
// and rewrites the error answers net/http writes without a handler.
type apiConn struct {
	net.Conn
	release   func()
	closeOnce sync.Once
}

func (c *apiConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(c.release)
	return err
}

// CloseWrite lets net/http half-close the connection after a 431, as it
// does on a bare TCP connection, so the client reads the answer before
// the connection goes.
func (c *apiConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Write passes answers through, except an error answer net/http wrote
// by itself, which it replaces with the same status in the envelope.
func (c *apiConn) Write(p []byte) (int, error) {
	out, ok := envelopeOf(p)
	if !ok {
		return c.Conn.Write(p)
	}
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// envelopeOf recognises an error answer that no handler wrote and returns
// it rewritten in the error envelope.
//
// net/http answers some requests before any handler runs: 400 for a
// malformed request or Host header, 431 for headers over MaxHeaderBytes,
// 501 for an unknown Transfer-Encoding, 505 for an unsupported protocol
// version, all as "HTTP/1.1 <status>" with a plain-text body in one write,
// and 417 for an Expect other than 100-continue, with no body. It offers
// no hook for them. Every answer a handler writes carries X-Request-Id (the
// first thing withRequestContext sets), so an error answer without one is
// net/http's own. A handler's body can never be taken for such an answer:
// its JSON has no raw CR LF, and an answer's later writes do not start
// with a status line.
func envelopeOf(p []byte) ([]byte, bool) {
	const prefix = "HTTP/1.1 "
	if len(p) < len(prefix)+4 || string(p[:len(prefix)]) != prefix || p[len(prefix)+3] != ' ' {
		return nil, false
	}
	status, err := strconv.Atoi(string(p[len(prefix) : len(prefix)+3]))
	if err != nil || status < 400 || status > 599 {
		return nil, false
	}
	end := bytes.Index(p, []byte("\r\n\r\n"))
	if end < 0 {
		return nil, false
	}
	head, body := p[:end+2], p[end+4:]
	if bytes.Contains(head, []byte("\r\nX-Request-Id:")) {
		return nil, false
	}
	msg := cannedMessage(status, body)
	id := newRequestID()
	b, _ := json.Marshal(errorEnvelope{errorBody{RequestID: id, Code: strconv.Itoa(status) + "-01", Message: msg}})
	var out bytes.Buffer
	fmt.Fprintf(&out, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	fmt.Fprintf(&out, "Connection: close\r\nContent-Length: %d\r\nContent-Type: application/json\r\n", len(b)+1)
	fmt.Fprintf(&out, "Date: %s\r\nX-Request-Id: %s\r\n\r\n", time.Now().UTC().Format(http.TimeFormat), id)
	out.Write(b)
	out.WriteByte('\n')
	return out.Bytes(), true
}

// cannedMessage is the message of a net/http error answer: a sentence of
// ours for the statuses that say all there is to say, else net/http's own
// text without the status it repeats ("missing required Host header").
func cannedMessage(status int, body []byte) string {
	switch status {
	case http.StatusRequestHeaderFieldsTooLarge:
		return "the request's headers are larger than this server accepts"
	case http.StatusNotImplemented:
		return "unsupported Transfer-Encoding: only chunked is understood"
	case http.StatusHTTPVersionNotSupported:
		return "unsupported protocol version: this port speaks HTTP/1.1"
	case http.StatusExpectationFailed:
		return "the only Expect understood is 100-continue"
	}
	text := strings.TrimPrefix(string(body), strconv.Itoa(status)+" "+http.StatusText(status))
	if text = strings.TrimPrefix(text, ": "); text != "" {
		return text
	}
	if status == http.StatusBadRequest {
		return "malformed HTTP request"
	}
	if text = http.StatusText(status); text == "" {
		text = "the request was refused"
	}
	return text
}
