package sip

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchback/switchback/internal/config"
	"github.com/switchback/switchback/internal/sqlite"
	"github.com/switchback/switchback/internal/transfer"
)

// startEdge runs an edge whose only tenant takes calls from 127.0.0.2.
func startEdge(t *testing.T, mutate func(*config.Config)) *Edge {
	t.Helper()
	cfg := config.Default()
	cfg.SIP.Listen = "127.0.0.1:0"
	cfg.SIP.Trunks = nil
	cfg.Tenants[0].SIP.Allow = []string{"127.0.0.2/32"}
	if mutate != nil {
		mutate(&cfg)
	}
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "e.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc := transfer.New(transfer.Options{Store: db, Policy: func(string) (transfer.Policy, bool) { return transfer.Policy{}, true }})
	e, err := New(Options{Config: cfg, Transfers: svc, Nonces: db})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// exchange sends one datagram from the given local IP and returns the
// first response line, or "" if none came.
func exchange(t *testing.T, from string, to net.Addr, msg string) string {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(from)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg = strings.ReplaceAll(msg, "LOCAL", c.LocalAddr().String())
	if _, err := c.WriteTo([]byte(msg), to); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4096)
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
	return line
}

const options = "OPTIONS sip:demo@127.0.0.1 SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP LOCAL;branch=z9hG4bK-opt1\r\n" +
	"From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:demo@127.0.0.1>\r\n" +
	"Call-ID: opt-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"

func TestUnknownUDPSourcesAreRefusedStatelessly(t *testing.T) {
	e := startEdge(t, nil)
	to := net.UDPAddrFromAddrPort(e.Addr())
	if got := exchange(t, "127.0.0.1", to, options); got != "SIP/2.0 403 Forbidden" {
		t.Fatalf("unknown source got %q, want 403", got)
	}
	if got := exchange(t, "127.0.0.2", to, strings.Replace(options, "opt-1", "opt-2", 1)); got != "SIP/2.0 200 OK" {
		t.Fatalf("allowlisted source got %q, want 200", got)
	}
	// Garbage from an unknown source is dropped without an answer, and
	// the listener keeps serving.
	if got := exchange(t, "127.0.0.1", to, "\x00\x01garbage"); got != "" {
		t.Fatalf("garbage got %q", got)
	}
	if got := exchange(t, "127.0.0.2", to, strings.Replace(options, "opt-1", "opt-3", 1)); got != "SIP/2.0 200 OK" {
		t.Fatalf("after garbage: %q", got)
	}
}

func TestDigestAnywhereKeepsUnknownSources(t *testing.T) {
	e := startEdge(t, func(c *config.Config) {
		c.Tenants[0].SIP.Allow = nil
		c.Tenants[0].SIP.Users = []config.SIPUser{{Username: "u", Password: "p"}}
	})
	to := net.UDPAddrFromAddrPort(e.Addr())
	// With digest from anywhere, the filter lets every source through to
	// be challenged; OPTIONS itself needs no authentication.
	if got := exchange(t, "127.0.0.1", to, options); got != "SIP/2.0 200 OK" {
		t.Fatalf("got %q, want 200", got)
	}
}

func TestSIPOverTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeSelfSigned(t, certFile, keyFile)
	e := startEdge(t, func(c *config.Config) {
		c.SIP.TLS = config.SIPTLS{Listen: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile}
		c.Tenants[0].SIP.Allow = []string{"127.0.0.0/8"}
	})
	conn, err := tls.Dial("tcp", e.TLSAddr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msg := strings.ReplaceAll(strings.ReplaceAll(options, "SIP/2.0/UDP", "SIP/2.0/TLS"), "LOCAL", conn.LocalAddr().String())
	if _, err := conn.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "SIP/2.0 200 OK" {
		t.Fatalf("OPTIONS over TLS: %q %v", line, err)
	}
}

func writeSelfSigned(t *testing.T, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
}

func rawInvite(callID string) string {
	return "INVITE sip:demo@127.0.0.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP LOCAL;branch=z9hG4bK-" + callID + "\r\n" +
		"From: <sip:ivr@127.0.0.2>;tag=1\r\nTo: <sip:demo@127.0.0.1>\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n" +
		"Contact: <sip:ivr@LOCAL>\r\nX-ASAPP-CallTransferId: t-" + callID + "\r\nContent-Length: 0\r\n\r\n"
}

func TestTooManyPendingInvitesAreShed(t *testing.T) {
	e := startEdge(t, func(c *config.Config) {
		c.SIP.MaxPendingInvites = 1
		c.SIP.AnswerDelay = config.Duration(time.Second) // the first INVITE rings, pending
	})
	to := net.UDPAddrFromAddrPort(e.Addr())
	if got := exchange(t, "127.0.0.2", to, rawInvite("p1")); got != "SIP/2.0 100 Trying" {
		t.Fatalf("first INVITE got %q", got)
	}
	if got := exchange(t, "127.0.0.2", to, rawInvite("p2")); got != "SIP/2.0 503 Service Unavailable" {
		t.Fatalf("INVITE over the pending limit got %q, want 503", got)
	}
	if e.Shed() != 1 {
		t.Fatalf("shed = %d", e.Shed())
	}
	// Once the first is refused (its transfer does not exist), INVITEs are
	// taken again.
	deadline := time.Now().Add(3 * time.Second)
	for e.PendingInvites() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("pending = %d after the first INVITE ended", e.PendingInvites())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := exchange(t, "127.0.0.2", to, rawInvite("p3")); got != "SIP/2.0 100 Trying" {
		t.Fatalf("INVITE after the burst got %q", got)
	}
}
