package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestINVITEReturnToKamailio hands calls back by INVITE to Kamailio from
// Debian as the customer's SBC, which logs what it received and refuses
// the call with 486. The Request-URI it logs must be the returnURI up to
// its '?' byte for byte (DESIGN.md invariant 5), for URIs with
// parameters, escaped characters and ;transport=udp, and the URI's
// headers must arrive as real headers, unescaped (RFC 3261 §19.1.5).
func TestINVITEReturnToKamailio(t *testing.T) {
	requireSIPp(t)
	sbc := startKamailioUAS(t, "invite.cfg")
	g := startGateway(t)
	cases := []struct {
		name      string
		uri       string // PORT is Kamailio's
		uui, xfoo string // as Kamailio should log them; <null> when absent
	}{
		{"escaped user and parameters",
			"sip:desk%40site@127.0.0.1:PORT;transport=udp;x-line=7?User-to-User=abc%3Bencoding%3Dhex&X-Foo=1",
			"abc;encoding=hex", "1"},
		{"telephone number, escaped parameter value, headers in another order",
			"sip:%2B15551230000@127.0.0.1:PORT;user=phone;x-ctx=a%3Bb%20c;transport=udp?X-Foo=two%20words&User-to-User=00C1%3Bencoding%3Dhex%3Bpurpose%3Dcall",
			"00C1;encoding=hex;purpose=call", "two words"},
		{"no headers, a flag parameter, upper-case transport",
			"sip:Desk.Line-2@127.0.0.1:PORT;lr;transport=UDP",
			"<null>", "<null>"},
		{"password, empty and escaped parameter values, escaped & and = in headers",
			"sip:desk:pw@127.0.0.1:PORT;x=;y=%22q%22;Mixed=Case;transport=udp?X-Foo=a%26b%3Dc&User-to-User=x",
			"x", "a&b=c"},
		{"telephone subscriber with phone-context, UTF-8 header",
			"sip:+1-555-123;phone-context=example.com@127.0.0.1:PORT;user=phone?X-Foo=%E2%82%AC",
			"<null>", "€"},
		{"escaped ? in the user, an empty header",
			"sip:de%3Fsk@127.0.0.1:PORT;transport=udp?X-Foo=",
			"<null>", ""},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := "kam-inv-" + strconv.Itoa(i)
			uri := strings.ReplaceAll(tc.uri, "PORT", sbc.port)
			g.create(t, "acme", fmt.Sprintf(`{"id":%q,"externalConversationId":"c","type":"SIP","inputContext":{"taskName":"instant"},
				"sip":{"returnURI":%q,"returnTransferType":"INVITE"}}`, id, uri))
			ok, out := g.sipp(t, "transfer_bye.xml", nil, "X-ASAPP-CallTransferId: "+id, "acme")
			if !ok {
				t.Fatalf("caller: %s\nkamailio:\n%s\nswitchback:\n%s", out, sbc.log, g.stderr)
			}
			// Kamailio logs the INVITE before it answers, so before the
			// caller's BYE: this call's is the i-th (once, unless
			// Switchback sent it again before the 486 came).
			seen := sbc.invites()
			if len(seen) <= i {
				t.Fatalf("Kamailio logged %d INVITEs, want %d:\n%s\nswitchback:\n%s", len(seen), i+1, sbc.log, g.stderr)
			}
			want := kamailioInvite{ruri: uri[:strings.IndexByte(uri+"?", '?')], uui: tc.uui, xfoo: tc.xfoo}
			for _, got := range seen[i:] {
				if got != want {
					t.Fatalf("Kamailio received\n%+v\nwant\n%+v", got, want)
				}
			}
			r := g.get(t, "acme", id)
			rr, _ := r.body["returnResult"].(map[string]any)
			if r.str("status") != "COMPLETED" || rr["method"] != "INVITE" || rr["sipStatus"] != 486.0 || rr["fallback"] != true {
				t.Fatalf("after the refused INVITE return: %s", r.raw)
			}
		})
	}
}

// kamailioUAS is a running Kamailio in the foreground, answering on a
// loopback UDP port, logging to log.
type kamailioUAS struct {
	cmd  *exec.Cmd
	addr string // 127.0.0.1:port
	port string
	log  *lockedBuffer
	done chan struct{}
}

// startKamailioUAS runs Kamailio with testdata/kamailio/cfg on a free
// loopback UDP port and waits until it answers an OPTIONS. It is stopped
// at the end of the test, and ends by itself after two minutes should the
// test binary die first.
func startKamailioUAS(t *testing.T, cfg string) *kamailioUAS {
	t.Helper()
	bin, err := exec.LookPath("kamailio")
	if err != nil {
		bin = "/usr/sbin/kamailio" // a non-root PATH may lack /usr/sbin
		if _, err := os.Stat(bin); err != nil {
			t.Fatal("kamailio not found: run the tests with `make test`, which installs Debian's kamailio (scripts/deps.sh)")
		}
	}
	cfgPath, err := filepath.Abs(filepath.Join("testdata", "kamailio", cfg))
	if err != nil {
		t.Fatal(err)
	}
	for attempt := 1; ; attempt++ {
		k, err := tryKamailioUAS(t, bin, cfgPath)
		if err == nil {
			return k
		}
		// The port was free when picked; another process may have taken
		// it since.
		if attempt == 3 {
			t.Fatalf("kamailio did not start: %v", err)
		}
		t.Logf("kamailio again: %v", err)
	}
}

func tryKamailioUAS(t *testing.T, bin, cfg string) (*kamailioUAS, error) {
	dir := t.TempDir()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port)
	c.Close()
	k := &kamailioUAS{addr: "127.0.0.1:" + port, port: port, log: &lockedBuffer{}, done: make(chan struct{})}
	// timeout(1) bounds it, and kills its whole process group (Kamailio's
	// workers are forks) when the time is up.
	k.cmd = exec.Command("timeout", "-k", "5", "120", bin, "-f", cfg, "-DD", "-E", "-l", "udp:"+k.addr,
		"-m", "32", "-M", "8", "-w", dir, "-P", filepath.Join(dir, "kamailio.pid"))
	k.cmd.Dir = dir
	k.cmd.Stdout, k.cmd.Stderr = k.log, k.log
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := k.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { k.cmd.Wait(); close(k.done) }()
	if err := k.waitReady(10 * time.Second); err != nil {
		k.stop()
		return nil, fmt.Errorf("%w\n%s", err, k.log)
	}
	t.Cleanup(k.stop)
	return k, nil
}

// waitReady sends OPTIONS until Kamailio answers one.
func (k *kamailioUAS) waitReady(timeout time.Duration) error {
	conn, err := net.Dial("udp", k.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	local := conn.LocalAddr().String()
	buf := make([]byte, 4096)
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		select {
		case <-k.done:
			return errors.New("kamailio exited")
		default:
		}
		branch := "z9hG4bK-ready-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		fmt.Fprintf(conn, "OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=%s\r\nFrom: <sip:probe@%s>;tag=1\r\nTo: <sip:%s>\r\n"+
			"Call-ID: %s@probe\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
			k.addr, local, branch, local, k.addr, branch)
		conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, err := conn.Read(buf); err == nil && strings.HasPrefix(string(buf[:n]), "SIP/2.0 200 ") {
			return nil
		}
	}
	return errors.New("kamailio answered no OPTIONS")
}

// stop ends Kamailio's process group: SIGTERM, then SIGKILL after 3 s.
func (k *kamailioUAS) stop() {
	select {
	case <-k.done: // timeout(1) has reaped its group
		return
	default:
	}
	pgid := k.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-k.done:
		return
	case <-time.After(3 * time.Second):
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
	<-k.done
}

// kamailioInvite is what testdata/kamailio/invite.cfg logs of an INVITE.
type kamailioInvite struct{ ruri, uui, xfoo string }

var kamailioInviteLine = regexp.MustCompile(`(?m)NOTICE: <script>: RETURN-INVITE ruri=<(.*)> uui=<(.*)> xfoo=<(.*)>$`)

// invites are the INVITEs Kamailio logged, in order.
func (k *kamailioUAS) invites() []kamailioInvite {
	var out []kamailioInvite
	for _, m := range kamailioInviteLine.FindAllStringSubmatch(k.log.String(), -1) {
		out = append(out, kamailioInvite{m[1], m[2], m[3]})
	}
	return out
}
