package httpapi_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchback/switchback/internal/httpapi"
)

// dial opens a raw connection to the server at url.
func dial(t *testing.T, url string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedWithin reports how the server ended c: it waits up to limit for
// the server to close it, reading (and returning) whatever it answered.
func closedWithin(t *testing.T, c net.Conn, limit time.Duration) (answer string, took time.Duration) {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(limit))
	b, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the server still held the connection after %v (read %q)", limit, b)
	}
	return string(b), time.Since(start)
}

// slowOptions are tight limits, so a test sees them act; the bounds a test
// checks leave room for a loaded machine.
func slowOptions() *httpapi.ServerOptions {
	return &httpapi.ServerOptions{
		ReadHeaderTimeout: 500 * time.Millisecond,
		ReadBodyTimeout:   500 * time.Millisecond,
		WriteTimeout:      500 * time.Millisecond,
		IdleTimeout:       700 * time.Millisecond,
		MaxHeaderBytes:    4096,
	}
}

// TestSlowClientsAreCut holds connections the ways a slow or hostile client
// does: the server closes each within its limit instead of keeping a
// goroutine and a descriptor for it indefinitely.
func TestSlowClientsAreCut(t *testing.T) {
	h := newHarness(t, harnessOptions{Server: slowOptions()})
	auth := "asapp-api-id: " + h.KeyID + "\r\nasapp-api-secret: " + h.Secret + "\r\n"
	const limit = 10 * time.Second

	t.Run("nothing at all", func(t *testing.T) {
		c := dial(t, h.URL)
		if got, _ := closedWithin(t, c, limit); got != "" {
			t.Fatalf("answered %q", got)
		}
	})
	t.Run("headers trickled", func(t *testing.T) {
		c := dial(t, h.URL)
		go func() {
			for _, b := range []byte("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 200)) {
				if _, err := c.Write([]byte{b}); err != nil {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
		closedWithin(t, c, limit)
	})
	t.Run("headers then no body", func(t *testing.T) {
		c := dial(t, h.URL)
		io.WriteString(c, "POST "+transfersPath+" HTTP/1.1\r\nHost: x\r\n"+auth+"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
		got, _ := closedWithin(t, c, limit)
		checkEnvelope(t, got, 408, "408-01")
	})
	t.Run("body trickled byte by byte", func(t *testing.T) {
		c := dial(t, h.URL)
		body := sipBody("slow")
		io.WriteString(c, "POST "+transfersPath+" HTTP/1.1\r\nHost: x\r\n"+auth+"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
		go func() {
			for i := 0; i < len(body); i++ {
				if _, err := io.WriteString(c, "1\r\n"+body[i:i+1]+"\r\n"); err != nil {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
		got, took := closedWithin(t, c, limit)
		checkEnvelope(t, got, 408, "408-01")
		if took > time.Duration(len(body))*50*time.Millisecond/2 {
			t.Fatalf("the trickle was read for %v", took)
		}
	})
	t.Run("idle after a request", func(t *testing.T) {
		c := dial(t, h.URL)
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		got, _ := closedWithin(t, c, limit)
		if !strings.HasPrefix(got, "HTTP/1.1 200 ") {
			t.Fatalf("answered %q", got)
		}
	})
	if r := h.do("GET", transfersPath+"/slow", ""); r.Status != 404 {
		t.Fatalf("a body that never arrived whole created a transfer: %d %s", r.Status, r.Body)
	}
}

// TestWaitsOutliveTheConnectionLimits checks the body and write deadlines
// do not cut a wait short: a wait four times longer than either answers in
// full, on a fresh connection and after a create on a kept-alive one.
func TestWaitsOutliveTheConnectionLimits(t *testing.T) {
	o := slowOptions()
	o.ReadBodyTimeout, o.WriteTimeout = 250*time.Millisecond, 250*time.Millisecond
	h := newHarness(t, harnessOptions{RealClock: true, Server: o})
	c := dial(t, h.URL)
	br := bufio.NewReader(c)
	auth := "asapp-api-id: " + h.KeyID + "\r\nasapp-api-secret: " + h.Secret + "\r\n"
	body := sipBody("w-1")
	io.WriteString(c, "POST "+transfersPath+" HTTP/1.1\r\nHost: x\r\n"+auth+"Content-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("create: %v %v", res, err)
	}
	io.Copy(io.Discard, res.Body)
	start := time.Now()
	io.WriteString(c, "GET "+transfersPath+"/w-1?waitForStatus=COMPLETED&timeout=1s HTTP/1.1\r\nHost: x\r\n"+auth+"\r\n")
	res, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("wait on a kept-alive connection: %v", err)
	}
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != 200 || res.Header.Get("Switchback-Wait-Result") != "timeout" || !strings.Contains(string(b), `"w-1"`) {
		t.Fatalf("wait: %d %v %q %v", res.StatusCode, res.Header, b, err)
	}
	if el := time.Since(start); el < time.Second {
		t.Fatalf("the wait answered after %v, before its timeout", el)
	}
	if r := h.do("GET", transfersPath+"/w-1?waitForStatus=COMPLETED&timeout=1s", ""); r.Status != 200 || r.Header.Get("Switchback-Wait-Result") != "timeout" {
		t.Fatalf("wait on a new connection: %d %s", r.Status, r.Body)
	}
}

// TestConnectionsPastTheCapWait fills the connection cap with connections
// that send nothing: another connection is not served, and costs the
// server nothing, until one of them closes.
func TestConnectionsPastTheCapWait(t *testing.T) {
	o := slowOptions()
	o.ReadHeaderTimeout, o.MaxConnections = time.Minute, 3
	h := newHarness(t, harnessOptions{Server: o})
	var held []net.Conn
	for range 3 {
		held = append(held, dial(t, h.URL))
	}
	time.Sleep(200 * time.Millisecond) // the server accepts them
	before := runtime.NumGoroutine()
	var extra []net.Conn
	for range 50 {
		extra = append(extra, dial(t, h.URL))
	}
	for _, c := range extra {
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	time.Sleep(500 * time.Millisecond)
	if grown := runtime.NumGoroutine() - before; grown > 10 {
		t.Fatalf("50 connections past the cap of 3 started %d goroutines", grown)
	}
	extra[0].SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := extra[0].Read(make([]byte, 1)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a connection past the cap was served: %d %v", n, err)
	}
	for _, c := range held {
		c.Close()
	}
	// Each answered connection stays until its idle timeout, taking its
	// slot; three at a time, all 50 are answered.
	for i, c := range extra {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("connection %d past the cap, once a slot was free: %v %v", i, res, err)
		}
		c.Close()
	}
}

// TestNetHTTPErrorsUseTheEnvelope sends requests net/http refuses before
// any handler runs, or that http.ServeMux would answer with a redirect or
// plain text: each is answered in the error envelope.
func TestNetHTTPErrorsUseTheEnvelope(t *testing.T) {
	h := newHarness(t, harnessOptions{Server: slowOptions()})
	cases := []struct {
		name, request string
		status        int
	}{
		{"unknown transfer coding", "POST " + transfersPath + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
		{"HTTP/2.0 request line", "GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 505},
		{"HTTP/3.0 request line", "GET /healthz HTTP/3.0\r\nHost: x\r\n\r\n", 505},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
		{"headers too large", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 10000) + "\r\n\r\n", 431},
		{"no Host", "GET /healthz HTTP/1.1\r\n\r\n", 400},
		{"two Hosts", "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"bad Host", "GET /healthz HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"not HTTP", "HELLO\r\n\r\n", 400},
		{"bad header name", "GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", 400},
		{"NUL in a header", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400},
		{"bad Content-Length", "POST " + transfersPath + " HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400},
		{"two Content-Lengths", "POST " + transfersPath + " HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}", 400},
		{"unknown expectation", "GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: coffee\r\n\r\n", 417},
		{"asterisk target", "GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"doubled slash", "GET //generativeagent/v1/call-transfers HTTP/1.1\r\nHost: x\r\n\r\n", 404},
		{"dot segment", "GET /generativeagent/v1/call-transfers/../call-transfers HTTP/1.1\r\nHost: x\r\n\r\n", 404},
		{"dot-dot id", "GET /generativeagent/v1/call-transfers/.. HTTP/1.1\r\nHost: x\r\n\r\n", 404},
		{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 404},
		{"absolute form elsewhere", "GET http://example.com/healthz HTTP/1.1\r\nHost: example.com\r\n\r\n", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := raw(t, h.URL, tc.request)
			if tc.status == 0 { // served as any request: no error
				if r.Status != 200 {
					t.Fatalf("status %d: %s", r.Status, r.Body)
				}
				return
			}
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q: %s", ct, r.Body)
			}
			if code := r.errorCode(t); code != strconv.Itoa(tc.status)+"-01" {
				t.Fatalf("code %s: %s", code, r.Body)
			}
		})
	}
}

// checkEnvelope fails t unless raw, a whole answer read off a connection,
// is the error envelope with status and code.
func checkEnvelope(t *testing.T, raw string, status int, code string) {
	t.Helper()
	res, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), nil)
	if err != nil {
		t.Fatalf("not an HTTP answer: %q", raw)
	}
	b, _ := io.ReadAll(res.Body)
	r := &rawResponse{Status: res.StatusCode, Header: res.Header, Body: b}
	json.Unmarshal(b, &r.JSON)
	if r.Status != status {
		t.Fatalf("status %d, want %d: %s", r.Status, status, b)
	}
	if got := r.errorCode(t); got != code {
		t.Fatalf("code %s, want %s: %s", got, code, b)
	}
}
