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

// TestReferThroughKamailio hands calls back by REFER to a caller behind the
// customer's SBC, Kamailio from Debian as a record-routing proxy:
// SIPp -> Kamailio -> Switchback, and Switchback's REFER back through
// Kamailio to SIPp. Kamailio logs the Refer-To it received, which must be
// <returnURI> byte for byte (DESIGN.md invariant 5) for URIs with
// parameters, escaped characters, headers, the sips: scheme, and a
// telephone-subscriber user.
func TestReferThroughKamailio(t *testing.T) {
	requireSIPp(t)
	g := startGateway(t)
	sbc := startKamailio(t, "sbc.cfg", "sip:"+g.sip)
	uris := []struct{ name, uri string }{
		{"uri parameters", "sip:agent@customer-sbc.example.com;User-to-User=UUI-12345;transport=tcp"},
		{"escaped characters", "sip:desk%20one%40branch@customer-sbc.example.com;x-route=a%3Bb%20c"},
		{"uri headers", "sip:agent@customer-sbc.example.com?User-to-User=abc&X-Foo=1"},
		{"sips", "sips:agent@customer-sbc.example.com:5061;User-to-User=UUI-9"},
		{"telephone subscriber", "sip:+15551234567;phone-context=+1@customer-sbc.example.com;user=phone"},
		{"parameters and escaped headers", "sip:queue@customer-sbc.example.com;transport=udp?User-to-User=00FA08%3Bencoding%3Dhex&X-Ticket=42"},
	}
	for i, tc := range uris {
		t.Run(tc.name, func(t *testing.T) {
			id := "sbc-" + strconv.Itoa(i)
			g.create(t, "acme", referTransfer(id, tc.uri))
			ok, out := sippTo(t, sbc.addr, "refer_via_sbc.xml", map[string]string{"SBC_PORT": sbc.port()},
				"X-ASAPP-CallTransferId: "+id, "acme")
			if !ok {
				t.Fatalf("sipp through Kamailio: %s\nkamailio:\n%s\nswitchback:\n%s", out, sbc.log, g.stderr)
			}
			// The REFER is logged before Kamailio relays it, so before
			// SIPp has it: this call's is the i-th.
			seen := sbc.referTos()
			if len(seen) != i+1 {
				t.Fatalf("Kamailio logged %d REFERs, want %d:\n%s", len(seen), i+1, sbc.log)
			}
			if want := "<" + tc.uri + ">"; seen[i] != want {
				t.Fatalf("Kamailio received Refer-To %q, want %q", seen[i], want)
			}
			if !strings.Contains(out, "REFER-TO <"+tc.uri+">\n") {
				t.Fatalf("the caller received another Refer-To than <%s>:\n%s", tc.uri, out)
			}
			g.handedBack(t, "acme", id, map[string]any{"method": "REFER", "sipStatus": 202.0, "notifyStatus": 200.0, "fallback": false})
		})
	}
	// Every in-dialog request went through Kamailio: the ACK, the
	// NOTIFYs and Switchback's REFER and BYE, per call.
	for _, m := range []string{"ACK", "REFER", "NOTIFY", "BYE"} {
		want := len(uris)
		if m == "NOTIFY" {
			want *= 2
		}
		if n := strings.Count(sbc.log.String(), "IN-DIALOG "+m+" "); n != want {
			t.Errorf("Kamailio relayed %d in-dialog %ss, want %d:\n%s", n, m, want, sbc.log)
		}
	}
}

// kamailio is a running Kamailio, in the foreground, logging to log.
type kamailio struct {
	cmd  *exec.Cmd
	addr string // host:port of its UDP socket
	log  *lockedBuffer
	done chan struct{}
}

// startKamailio runs Kamailio with testdata/kamailio/cfg on a free
// loopback UDP port, with the preprocessor define SWITCHBACK set to
// switchback (a SIP URI) unless that is empty, and waits until it answers an OPTIONS. It is
// stopped at the end of the test, and ends by itself after two minutes
// should the test binary die first.
func startKamailio(t *testing.T, cfg, switchback string) *kamailio {
	t.Helper()
	cfgPath, err := filepath.Abs(filepath.Join("testdata", "kamailio", cfg))
	if err != nil {
		t.Fatal(err)
	}
	return runKamailio(t, cfgPath, func(addr, dir string) []string {
		args := []string{"-l", "udp:" + addr}
		if switchback != "" {
			args = append(args, "-A", `SWITCHBACK="`+switchback+`"`)
		}
		return args
	})
}

// runKamailio runs Kamailio with the configuration file at cfg (an
// absolute path), on a free loopback UDP port, as startKamailio does;
// args are the command line's arguments that say where it listens and
// anything else, given its address (host:port) and its working directory.
func runKamailio(t *testing.T, cfg string, args func(addr, dir string) []string) *kamailio {
	t.Helper()
	bin, err := exec.LookPath("kamailio")
	if err != nil {
		bin = "/usr/sbin/kamailio" // a non-root PATH may lack /usr/sbin
		if _, err := os.Stat(bin); err != nil {
			t.Fatal("kamailio not found: run the tests with `make test`, which installs Debian's kamailio (scripts/deps.sh)")
		}
	}
	for attempt := 1; ; attempt++ {
		k, err := tryKamailio(t, bin, cfg, args)
		if err == nil {
			return k
		}
		// The port was free when picked; another process may have
		// taken it since.
		if attempt == 3 {
			t.Fatalf("kamailio did not start: %v", err)
		}
		t.Logf("kamailio again: %v", err)
	}
}

func tryKamailio(t *testing.T, bin, cfg string, extra func(addr, dir string) []string) (*kamailio, error) {
	dir := t.TempDir()
	port, err := freeUDPPort()
	if err != nil {
		return nil, err
	}
	k := &kamailio{addr: "127.0.0.1:" + strconv.Itoa(port), log: &lockedBuffer{}, done: make(chan struct{})}
	// timeout(1) bounds it, and kills its whole process group (Kamailio's
	// workers are forks) when the time is up.
	args := append([]string{"-k", "5", "120", bin, "-f", cfg, "-DD", "-E"}, extra(k.addr, dir)...)
	args = append(args, "-m", "32", "-M", "8", "-w", dir, "-P", filepath.Join(dir, "kamailio.pid"))
	k.cmd = exec.Command("timeout", args...)
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

// waitReady sends OPTIONS until Kamailio answers one (with anything).
func (k *kamailio) waitReady(timeout time.Duration) error {
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
		if n, err := conn.Read(buf); err == nil && strings.HasPrefix(string(buf[:n]), "SIP/2.0 ") {
			return nil
		}
	}
	return errors.New("kamailio answered no OPTIONS")
}

// stop ends Kamailio's process group: SIGTERM, then SIGKILL after 3 s.
func (k *kamailio) stop() {
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

// port is the port of Kamailio's socket.
func (k *kamailio) port() string {
	_, port, _ := net.SplitHostPort(k.addr)
	return port
}

var kamailioReferTo = regexp.MustCompile(`(?m)NOTICE: <script>: REFER-TO (.*)$`)

// referTos are the Refer-To values Kamailio logged, in order.
func (k *kamailio) referTos() []string {
	var out []string
	for _, m := range kamailioReferTo.FindAllStringSubmatch(k.log.String(), -1) {
		out = append(out, m[1])
	}
	return out
}

// freeUDPPort returns a loopback UDP port nothing is bound to right now.
func freeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}
