// Package loadkit holds what the load generators of the media benchmarks
// (bench/bridge, bench/stream) share: the line protocol that drives the
// process under test, the sending of many 20 ms streams spread over the
// frame, and the helpers of their reports.
package loadkit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/switchback/switchback/internal/media"
)

// Serve answers the line protocol on ln, one connection at a time, until
// ln is closed: each request is a line of space-separated fields, and each
// answer is the line handle returns, or "err " and its error.
func Serve(ln net.Listener, handle func(fields []string) (string, error)) error {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return err
		}
		serveConn(conn, handle)
	}
}

func serveConn(conn net.Conn, handle func([]string) (string, error)) {
	defer conn.Close()
	in := bufio.NewReader(conn)
	out := bufio.NewWriter(conn)
	for {
		line, err := in.ReadString('\n')
		if err != nil {
			out.Flush()
			return
		}
		answer, err := handle(strings.Fields(line))
		if err != nil {
			answer = "err " + strings.ReplaceAll(err.Error(), "\n", " ")
		}
		out.WriteString(answer + "\n")
		// Answer at once when the client waits; in batches when it sends
		// many requests at once.
		if in.Buffered() == 0 && out.Flush() != nil {
			return
		}
	}
}

// Client speaks the line protocol to a process Serve answers for.
type Client struct {
	name string
	conn net.Conn
	in   *bufio.Reader
}

// Dial connects to the process at addr; name says whose errors they are.
func Dial(name, addr string) (*Client, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &Client{name: name, conn: conn, in: bufio.NewReader(conn)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Request sends line and returns the fields of an "ok" answer after the
// "ok"; any other answer is an error.
func (c *Client) Request(line string) ([]string, error) {
	c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.conn.Write([]byte(line + "\n")); err != nil {
		return nil, err
	}
	answer, err := c.in.ReadString('\n')
	if err != nil {
		return nil, err
	}
	f := strings.Fields(answer)
	if len(f) == 0 || f[0] != "ok" {
		return nil, fmt.Errorf("%s: %s", c.name, strings.TrimSpace(answer))
	}
	return f[1:], nil
}

// Slots is how many 1 ms slots the streams of a load are spread over: as
// calls that started at random moments are.
const Slots = 20

// A Sender sends its stream's next packet, using buf, and counts it when
// it left within [w0, w1).
type Sender interface {
	Send(buf []byte, w0, w1 time.Time)
}

// SendEvery20ms sends each stream of slots its packet every 20 ms, slot
// after slot against absolute deadlines, from start until w1, with a
// buffer of size bytes, and returns how late each slot started.
func SendEvery20ms[S Sender](slots *[Slots][]S, size int, start, w0, w1 time.Time) []time.Duration {
	buf := make([]byte, size)
	lags := make([]time.Duration, 0, int(w1.Sub(start)/time.Millisecond)+1)
	for k := 0; ; k++ {
		for s := range Slots {
			deadline := start.Add(time.Duration(k)*20*time.Millisecond + time.Duration(s)*time.Millisecond)
			if !deadline.Before(w1) {
				return lags
			}
			if d := time.Until(deadline); d > 0 {
				time.Sleep(d)
			}
			lags = append(lags, time.Since(deadline))
			for _, st := range slots[s] {
				st.Send(buf, w0, w1)
			}
		}
	}
}

// ReadJSONL reads the lines of a results file that decode into a T and
// that keep accepts.
func ReadJSONL[T any](path string, keep func(*T) bool) ([]T, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r T
		if json.Unmarshal(sc.Bytes(), &r) == nil && keep(&r) {
			out = append(out, r)
		}
	}
	return out, sc.Err()
}

// PassFail is a target's verdict.
func PassFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// Median is the median of xs, which it leaves as they are.
func Median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Ratio prints a/b with two decimals, or a dash when b is 0.
func Ratio(a, b float64) string {
	if b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// ParsePorts reads a -ports flag's MIN-MAX.
func ParsePorts(s string) (media.PortRange, error) {
	lo, hi, ok := strings.Cut(s, "-")
	pmin, err1 := strconv.Atoi(lo)
	pmax, err2 := strconv.Atoi(hi)
	if !ok || err1 != nil || err2 != nil {
		return media.PortRange{}, fmt.Errorf("-ports %q: want MIN-MAX", s)
	}
	return media.PortRange{Min: pmin, Max: pmax}, nil
}

// StartCPUProfile writes a CPU profile of the process to path, if it is
// not empty, until the function it returns is called.
func StartCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
