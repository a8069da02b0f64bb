// Package e2e tests the switchback binary as an operator runs it: real
// processes, real stores, killed and restarted.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// binary is the switchback command built once for the whole package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "switchback-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "switchback")
	build := exec.Command("go", "build", "-race", "-o", binary, "../cmd/switchback")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build switchback:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is one running `switchback serve`.
type server struct {
	t      *testing.T
	cmd    *exec.Cmd
	URL    string
	stdout *lockedBuffer
	stderr *lockedBuffer
	done   chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var listening = regexp.MustCompile(`Switchback API on (http://\S+)`)

// startServer runs `switchback serve --config cfg` in dir, its API and
// SIP on free loopback ports, and waits until its /healthz answers.
func startServer(t *testing.T, dir, cfg string) *server {
	t.Helper()
	return startServerEnv(t, dir, cfg, "SWITCHBACK_API_LISTEN=127.0.0.1:0", "SWITCHBACK_SIP_LISTEN=127.0.0.1:0")
}

// startServerEnv is startServer with env (NAME=value) added to the
// environment instead of the loopback listen addresses.
func startServerEnv(t *testing.T, dir, cfg string, env ...string) *server {
	t.Helper()
	s := &server{t: t, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan struct{})}
	args := []string{"serve"}
	if cfg != "" {
		args = append(args, "--config", cfg)
	}
	s.cmd = exec.Command(binary, args...)
	s.cmd.Dir = dir
	s.cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	s.cmd.Stdout = pw
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); pw.Close(); close(s.done) }()
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			s.stdout.Write([]byte(line + "\n"))
			if m := listening.FindStringSubmatch(line); m != nil {
				urls <- m[1]
			}
		}
	}()
	t.Cleanup(s.kill)
	select {
	case s.URL = <-urls:
	case <-s.done:
		t.Fatalf("switchback serve exited: %s", s.stderr)
	case <-time.After(60 * time.Second):
		t.Fatalf("switchback serve did not start: %s", s.stderr)
	}
	for i := 0; ; i++ {
		res, err := http.Get(s.URL + "/healthz")
		if err == nil && res.StatusCode == 200 {
			res.Body.Close()
			return s
		}
		if i > 100 {
			t.Fatalf("healthz never answered: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startFailing runs `switchback serve` in dir on the defaults, expects it to
// exit with an error, and returns what it said.
func startFailing(t *testing.T, dir string) string {
	t.Helper()
	cmd := exec.Command(binary, "serve")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SWITCHBACK_API_LISTEN=127.0.0.1:0", "SWITCHBACK_SIP_LISTEN=127.0.0.1:0")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("serve started where it should have refused:\n%s", out)
	}
	return string(out)
}

// kill stops the server with SIGKILL: no shutdown code runs.
func (s *server) kill() {
	if s.cmd.Process != nil {
		s.cmd.Process.Kill()
	}
	<-s.done
}

// cli runs a switchback command and returns its stdout.
func cli(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("switchback %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

// credentials are an API key's id and secret.
type credentials struct{ id, secret string }

var keyLines = regexp.MustCompile(`asapp-api-id: (\S+)\s+asapp-api-secret: (\S+)`)

// newKey makes a demo-tenant key with `switchback keys create`.
func newKey(t *testing.T, dir, cfg string) credentials {
	t.Helper()
	out := cli(t, dir, "keys", "create", "--config", cfg, "--tenant", "demo")
	m := keyLines.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("keys create printed no key: %s", out)
	}
	return credentials{m[1], m[2]}
}

// client talks to the API with a key.
type client struct {
	http *http.Client
	key  credentials
}

func newClient(key credentials) *client {
	return &client{http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}, key: key}
}

type apiResponse struct {
	status int
	body   map[string]any
	raw    []byte
}

func (c *client) do(ctx context.Context, method, url, body string) (*apiResponse, error) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("asapp-api-id", c.key.id)
	req.Header.Set("asapp-api-secret", c.key.secret)
	req.Header.Set("Content-Type", "application/json")
	res, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	out := &apiResponse{status: res.StatusCode, raw: raw}
	json.Unmarshal(raw, &out.body)
	return out, nil
}

func (r *apiResponse) str(key string) string {
	v, _ := r.body[key].(string)
	return v
}

func (r *apiResponse) errorCode() string {
	e, _ := r.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
