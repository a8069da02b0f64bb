package loadkit

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLineProtocol(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- Serve(ln, func(f []string) (string, error) {
			if len(f) > 0 && f[0] == "echo" {
				return "ok " + strings.Join(f[1:], " "), nil
			}
			return "", errors.New("unknown\nrequest")
		})
	}()
	c, err := Dial("test", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if f, err := c.Request("echo a b"); err != nil || strings.Join(f, ",") != "a,b" {
		t.Errorf("echo a b = %q, %v", f, err)
	}
	if f, err := c.Request("echo"); err != nil || len(f) != 0 {
		t.Errorf("echo = %q, %v", f, err)
	}
	if _, err := c.Request("nope"); err == nil || err.Error() != "test: err unknown request" {
		t.Errorf("nope: %v, want the error on one line, named", err)
	}
	c.Close()
	ln.Close()
	if err := <-done; err == nil {
		t.Error("Serve returned nil once its listener closed")
	}
}

type counter struct{ sent int }

// Send counts every packet: a loaded machine may send the last one after
// the window, which is the Sender's to judge.
func (c *counter) Send(buf []byte, w0, w1 time.Time) { c.sent++ }

func TestSendEvery20ms(t *testing.T) {
	var slots [Slots][]*counter
	a, b := &counter{}, &counter{}
	slots[0] = append(slots[0], a)
	slots[Slots-1] = append(slots[Slots-1], b)
	start := time.Now()
	lags := SendEvery20ms(&slots, 172, start, start, start.Add(200*time.Millisecond))
	if a.sent != 10 || b.sent != 10 {
		t.Errorf("sent %d and %d packets in 200 ms, want 10 each", a.sent, b.sent)
	}
	if len(lags) != 200 {
		t.Errorf("%d slots, want 200", len(lags))
	}
}

func TestReportHelpers(t *testing.T) {
	if m := Median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("Median odd = %v", m)
	}
	if m := Median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("Median even = %v", m)
	}
	if m := Median(nil); m != 0 {
		t.Errorf("Median(nil) = %v", m)
	}
	if r := Ratio(1, 0); r != "—" {
		t.Errorf("Ratio(1, 0) = %q", r)
	}
	if r := Ratio(1, 3); r != "0.33" {
		t.Errorf("Ratio(1, 3) = %q", r)
	}
	path := filepath.Join(t.TempDir(), "r.jsonl")
	os.WriteFile(path, []byte("{\"kind\":\"a\",\"n\":1}\nnot json\n{\"kind\":\"b\",\"n\":2}\n{\"kind\":\"a\",\"n\":3}\n"), 0o644)
	type row struct {
		Kind string `json:"kind"`
		N    int    `json:"n"`
	}
	rows, err := ReadJSONL(path, func(r *row) bool { return r.Kind == "a" })
	if err != nil || len(rows) != 2 || rows[0].N != 1 || rows[1].N != 3 {
		t.Errorf("ReadJSONL = %+v, %v", rows, err)
	}
}
