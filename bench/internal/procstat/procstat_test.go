package procstat

import (
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func requireLinux(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
}

func TestStatReadsThisProcess(t *testing.T) {
	requireLinux(t)
	p, ok := Stat(os.Getpid())
	if !ok || p.PPID != os.Getppid() || !strings.HasPrefix("procstat.test", p.Name) {
		t.Fatalf("Stat(self) = %+v, %v", p, ok)
	}
	if _, ok := Stat(1 << 30); ok {
		t.Error("Stat of a pid that cannot exist")
	}
}

// TestTreeFollowsChildren starts a child and a grandchild (a shell
// running sleep) and finds both under this process.
func TestTreeFollowsChildren(t *testing.T) {
	requireLinux(t)
	cmd := exec.Command("sh", "-c", "sleep 5 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var tree []int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if tree = Tree([]int{os.Getpid()}); len(tree) >= 3 {
			break
		}
	}
	if !slices.Contains(tree, os.Getpid()) || !slices.Contains(tree, cmd.Process.Pid) || len(tree) < 3 {
		t.Fatalf("Tree(self) = %v; want this process, the shell %d and its sleep", tree, cmd.Process.Pid)
	}
	if Tree(nil) != nil {
		t.Error("Tree(nil) is not empty")
	}
}

func TestDescendants(t *testing.T) {
	procs := map[int]Proc{1: {PPID: 0}, 10: {PPID: 1}, 11: {PPID: 10}, 12: {PPID: 11}, 20: {PPID: 1}, 21: {PPID: 20}}
	for _, tc := range []struct {
		name  string
		roots []int
		want  []int
	}{
		{"a subtree", []int{10}, []int{10, 11, 12}},
		{"two", []int{11, 20}, []int{11, 12, 20, 21}},
		{"a leaf", []int{21}, []int{21}},
		{"gone", []int{99}, nil},
		{"none", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Descendants(procs, tc.roots)
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Descendants(%v) = %v, want %v", tc.roots, got, tc.want)
			}
		})
	}
}

// TestSamplerCountsThisProcess burns 0.3 s of CPU in this process, the
// client, and finds it in the samples and in Usage, however busy the
// machine.
func TestSamplerCountsThisProcess(t *testing.T) {
	requireLinux(t)
	s := Start(Reader{Server: []int{os.Getpid()}, Self: true, Memory: true}, 50*time.Millisecond)
	self, _ := Stat(os.Getpid())
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		if now, _ := Stat(os.Getpid()); now.Ticks-self.Ticks >= 30 {
			break
		}
	}
	samples := s.Finish()
	if len(samples) < 3 {
		t.Fatalf("%d samples", len(samples))
	}
	a, b := samples[0], samples[len(samples)-1]
	if !a.OK || !b.OK || b.ServerPSSKB <= 0 {
		t.Fatalf("samples %+v ... %+v", a, b)
	}
	u := UsageBetween(a, b, samples)
	// This process is both the server and the client: each saw the burn.
	if u.ServerCPU < 0.3 || b.Client-a.Client < 30 || u.ServerPct <= 0 || u.ClientPct <= 0 || u.MemMaxMB <= 0 {
		t.Fatalf("usage %+v, client ticks %d", u, b.Client-a.Client)
	}
}

func TestUsageBetween(t *testing.T) {
	at := time.Unix(1000, 0)
	a := Sample{At: at, OK: true, Busy: 1000, Steal: 10, Server: map[int]int64{1: 100, 2: 50, 3: 7}, Client: 20, ServerPSSKB: 1024}
	// Over 2 s: pid 1 ran 60 ticks, 2 ran 20, 3 ended, 4 was born and ran
	// 10; the client ran 30; the machine 200, 4 of them stolen.
	b := Sample{At: at.Add(2 * time.Second), OK: true, Busy: 1200, Steal: 14, Server: map[int]int64{1: 160, 2: 70, 4: 10}, Client: 50, ServerPSSKB: 3072}
	mid := Sample{ServerPSSKB: 5120}
	if got := ServerTicks(a, b); got != 90 {
		t.Errorf("ServerTicks = %d, want 90", got)
	}
	u := UsageBetween(a, b, []Sample{a, mid, b})
	want := Usage{Seconds: 2, ServerPct: 45, ClientPct: 15, OtherPct: 40, StealPct: 2,
		IdlePct: float64(runtime.NumCPU())*100 - 100, ServerCPU: 0.9, MemMaxMB: 5}
	if u != want {
		t.Fatalf("UsageBetween = %+v\nwant %+v", u, want)
	}
	if (UsageBetween(b, a, nil) != Usage{}) {
		t.Error("a span that goes back in time has a usage")
	}
}

func TestBusiest(t *testing.T) {
	a := map[int]Proc{1: {Name: "go", Ticks: 100}, 2: {Name: "sipp", Ticks: 0}, 3: {Name: "go", Ticks: 5}, 4: {Name: "idle", Ticks: 1}}
	b := map[int]Proc{1: {Name: "go", Ticks: 130}, 2: {Name: "sipp", Ticks: 50}, 3: {Name: "go", Ticks: 25}, 4: {Name: "idle", Ticks: 1},
		5: {Name: "new", Ticks: 12}, 6: {Name: "skipped", Ticks: 500}}
	got := Busiest(a, b, map[int]bool{6: true}, 1, 2)
	if got != "go 50%, sipp 50%" && got != "sipp 50%, go 50%" {
		t.Fatalf("Busiest = %q", got)
	}
	if got := Busiest(a, b, map[int]bool{6: true}, 1, 5); !strings.HasSuffix(got, ", new 12%") {
		t.Fatalf("Busiest of 5 = %q", got)
	}
}

func TestParsePIDs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		err  bool
	}{
		{"", nil, false},
		{"12", []int{12}, false},
		{"12,34 56", []int{12, 34, 56}, false},
		{"12,x", nil, true},
		{"0", nil, true},
		{"-3", nil, true},
	} {
		got, err := ParsePIDs(tc.in)
		if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
			t.Errorf("ParsePIDs(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func TestMachineAndSockets(t *testing.T) {
	requireLinux(t)
	busy, steal, ok := Machine()
	if !ok || busy <= 0 || steal < 0 {
		t.Fatalf("Machine() = %d, %d, %v", busy, steal, ok)
	}
	if rcvbuf, in := UDPErrors(); rcvbuf < 0 || in < 0 {
		t.Fatalf("UDPErrors() = %d, %d", rcvbuf, in)
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if d := SocketDrops(c.LocalAddr().(*net.UDPAddr).Port); d != 0 {
		t.Fatalf("a new socket dropped %d datagrams", d)
	}
}

// TestPressureReadsTheKernel reads the pressure stall totals, which only
// grow, where the kernel has them.
func TestPressureReadsTheKernel(t *testing.T) {
	requireLinux(t)
	some, full, ok := Pressure("io")
	if !ok {
		t.Skip("no /proc/pressure/io: a kernel without PSI")
	}
	if some < 0 || full < 0 || full > some {
		t.Fatalf("Pressure(io) = %d, %d: want 0 <= full <= some", some, full)
	}
	if _, _, ok := Pressure("nothing"); ok {
		t.Error("Pressure of a resource that does not exist")
	}
}
