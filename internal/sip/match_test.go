package sip

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchback/switchback"
)

func invite(t testing.TB, ruri string, extra ...string) *sip.Request {
	t.Helper()
	msg := "INVITE " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n" +
		"From: <sip:ivr@127.0.0.1>;tag=1\r\n" +
		"To: <sip:demo@127.0.0.1>\r\n" +
		"Call-ID: c1@127.0.0.1\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:ivr@127.0.0.1:5070>\r\n" +
		strings.Join(extra, "") +
		"Content-Length: 0\r\n\r\n"
	m, err := sip.ParseMessage([]byte(msg))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return m.(*sip.Request)
}

func TestTransferID(t *testing.T) {
	tests := []struct {
		name    string
		ruri    string
		headers []string
		want    string
		code    string
	}{
		{"header", "sip:demo@127.0.0.1", []string{"X-ASAPP-CallTransferId: t-1\r\n"}, "t-1", ""},
		{"header in lower case", "sip:demo@127.0.0.1", []string{"x-asapp-calltransferid: t-2\r\n"}, "t-2", ""},
		{"header wins over URI", "sip:demo@127.0.0.1?X-ASAPP-CallTransferId=uri", []string{"X-ASAPP-CallTransferId: hdr\r\n"}, "hdr", ""},
		{"URI header", "sip:demo@127.0.0.1?X-ASAPP-CallTransferId=t-3", nil, "t-3", ""},
		{"URI header any case, escaped", "sip:demo@127.0.0.1;transport=udp?x-asapp-calltransferid=t%2D4", nil, "t-4", ""},
		{"none", "sip:demo@127.0.0.1", []string{"X-Other: x\r\n"}, "", ""},
		{"unsafe id", "sip:demo@127.0.0.1", []string{"X-ASAPP-CallTransferId: a/b\r\n"}, "", switchback.EINVALID},
		{"empty id", "sip:demo@127.0.0.1", []string{"X-ASAPP-CallTransferId: \r\n"}, "", switchback.EINVALID},
		{"bad escape", "sip:demo@127.0.0.1?X-ASAPP-CallTransferId=%zz", nil, "", switchback.EINVALID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := transferID(invite(t, tt.ruri, tt.headers...))
			if code := switchback.ErrorCode(err); got != tt.want || code != tt.code {
				t.Fatalf("transferID = %q, %v; want %q, code %q", got, err, tt.want, tt.code)
			}
		})
	}
}

func TestDialledNumber(t *testing.T) {
	tests := map[string]string{
		"sip:+12025550100@127.0.0.1":        "+12025550100",
		"sip:12025550100@127.0.0.1":         "+12025550100",
		"sip:+1-202-555-0100@127.0.0.1":     "+12025550100",
		"sip:demo@127.0.0.1":                "",
		"sip:0123@127.0.0.1":                "",
		"sip:+12025550100;user=phone@127.0": "",
	}
	for ruri, want := range tests {
		if got := dialledNumber(invite(t, ruri)); got != want {
			t.Errorf("dialledNumber(%s) = %q, want %q", ruri, got, want)
		}
	}
}

func TestStatusTableCoversEveryCode(t *testing.T) {
	for _, code := range []string{switchback.EINVALID, switchback.EUNAUTHORIZED, switchback.EFORBIDDEN, switchback.ENOTFOUND,
		switchback.ECONFLICT, switchback.EGONE, switchback.ETOOLARGE, switchback.EUNPROCESSABLE, switchback.ERATELIMIT,
		switchback.EEXHAUSTED, switchback.EUNAVAILABLE, switchback.EINTERNAL, switchback.EBUSY, switchback.EFENCED} {
		if _, ok := statusOf[code]; !ok {
			t.Errorf("no SIP status for %s", code)
		}
	}
	for _, tt := range []struct {
		err   error
		code  int
		retry bool
	}{
		{switchback.Errorf(switchback.ENOTFOUND, "x"), 404, false},
		{switchback.Errorf(switchback.EGONE, "x"), 410, false},
		{switchback.Errorf(switchback.EINVALID, "x"), 400, false},
		{switchback.Errorf(switchback.ERATELIMIT, "x"), 486, true},
		{switchback.Errorf(switchback.EUNPROCESSABLE, "x"), 488, false},
		{switchback.Errorf(switchback.EBUSY, "x"), 486, true},
		{switchback.Errorf(switchback.EFENCED, "x"), 503, true},
		{errors.New("the store went away"), 503, true},
	} {
		s, retry := statusFor(tt.err)
		if s.code != tt.code || retry != tt.retry {
			t.Errorf("statusFor(%v) = %d %v, want %d %v", tt.err, s.code, retry, tt.code, tt.retry)
		}
	}
}

func FuzzTransferID(f *testing.F) {
	f.Add("sip:demo@127.0.0.1?X-ASAPP-CallTransferId=t-1", "X-ASAPP-CallTransferId: t-1\r\n")
	f.Add("sip:+12025550100@h", "")
	f.Add("sip:a@b?x-asapp-calltransferid=%", "X-A: b\r\n")
	f.Fuzz(func(t *testing.T, ruri, header string) {
		msg := "INVITE " + ruri + " SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\n" +
			"Call-ID: c\r\nCSeq: 1 INVITE\r\n" + header + "Content-Length: 0\r\n\r\n"
		m, err := sip.ParseMessage([]byte(msg))
		if err != nil {
			return
		}
		req, ok := m.(*sip.Request)
		if !ok {
			return
		}
		id, err := transferID(req)
		if err == nil && id != "" && !switchback.ValidID(id) {
			t.Fatalf("accepted id %q", id)
		}
		if n := dialledNumber(req); n != "" && !switchback.ValidE164(n) {
			t.Fatalf("dialled %q", n)
		}
	})
}

func TestSessionTimer(t *testing.T) {
	tests := []struct {
		header string
		want   string // header() of the result, or "" for no timer
	}{
		{"", ""},
		{"Session-Expires: 1800\r\n", "1800;refresher=uac"},
		{"Session-Expires: 1800;refresher=uac\r\n", "1800;refresher=uac"},
		{"Session-Expires: 600; refresher=UAS\r\n", "600;refresher=uas"},
		{"x: 90;refresher=uas\r\n", "90;refresher=uas"},
		{"Session-Expires: soon\r\n", ""},
		{"Session-Expires: -5\r\n", ""},
	}
	for _, tt := range tests {
		st := sessionTimer(invite(t, "sip:demo@127.0.0.1", tt.header))
		got := ""
		if st.interval > 0 {
			got = st.header(false) // in the answer to the INVITE
		}
		if got != tt.want {
			t.Errorf("%q: %q, want %q", tt.header, got, tt.want)
		}
	}
	// The refresher is named by its role in each transaction: in an
	// UPDATE Switchback sends as the refresher it is the uac; in its 200
	// to the peer's re-INVITE, when the peer refreshes, the peer is.
	for _, tt := range []struct {
		weRefresh, request bool
		want               string
	}{
		{true, true, "90;refresher=uac"},
		{true, false, "90;refresher=uas"},
		{false, true, "90;refresher=uas"},
		{false, false, "90;refresher=uac"},
	} {
		if got := (timerState{interval: 90 * time.Second, weRefresh: tt.weRefresh}).header(tt.request); got != tt.want {
			t.Errorf("weRefresh %v, request %v: %q, want %q", tt.weRefresh, tt.request, got, tt.want)
		}
	}
	if d := refreshDeadline(90 * time.Second); d != 60*time.Second {
		t.Errorf("deadline of 90 s = %v, want 60 s (RFC 4028 §10)", d)
	}
	if d := refreshDeadline(1800 * time.Second); d != 1768*time.Second {
		t.Errorf("deadline of 1800 s = %v, want 1768 s", d)
	}
}
