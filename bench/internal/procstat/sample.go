package procstat

import (
	"math"
	"os"
	"runtime"
	"sync"
	"time"
)

// Reader says which processes a Sample reads. A benchmark has a server
// (the processes under test) and a client (the load generator); the rest
// of the machine is everything else.
type Reader struct {
	// Server are root pids of the server; their descendants count too.
	Server []int
	// Client are root pids of the client, with their descendants; Self
	// counts this process as the client as well.
	Client []int
	Self   bool
	// Memory reads the server's PSS too, which costs more.
	Memory bool
}

// Sample is one reading of a Reader's processes and of the machine.
type Sample struct {
	At time.Time
	// OK is false when /proc/stat (or, with Self, this process) could
	// not be read: not Linux.
	OK bool
	// Busy and Steal are the machine's ticks (see Machine).
	Busy, Steal int64
	// Server holds the ticks of each process of the server.
	Server map[int]int64
	// Client is the ticks of the client's processes.
	Client int64
	// ServerPSSKB is the server's memory, with Reader.Memory.
	ServerPSSKB int64
}

// Read takes a Sample now.
func (r Reader) Read() Sample {
	s := Sample{At: time.Now(), Server: map[int]int64{}}
	s.Busy, s.Steal, s.OK = Machine()
	var procs map[int]Proc
	if len(r.Server) > 0 || len(r.Client) > 0 {
		procs = Processes()
	}
	for _, pid := range Descendants(procs, r.Server) {
		s.Server[pid] = procs[pid].Ticks
		if r.Memory {
			s.ServerPSSKB += PSSKB(pid)
		}
	}
	for _, pid := range Descendants(procs, r.Client) {
		s.Client += procs[pid].Ticks
	}
	if r.Self {
		self, ok := Stat(os.Getpid())
		s.Client += self.Ticks
		s.OK = s.OK && ok
	}
	return s
}

// ServerTicks is the server's CPU time from a to b: each process's ticks
// at b less its own at a (none for one started meanwhile). One that ended
// meanwhile is not counted.
func ServerTicks(a, b Sample) int64 {
	var t int64
	for pid, n := range b.Server {
		t += n - a.Server[pid]
	}
	return t
}

// Sampler takes a Sample at a fixed interval until Finish.
type Sampler struct {
	r       Reader
	mu      sync.Mutex
	samples []Sample
	stop    chan struct{}
	done    chan struct{}
}

// Start takes a Sample now and then one every interval, in a goroutine
// that Finish ends.
func Start(r Reader, every time.Duration) *Sampler {
	s := &Sampler{r: r, stop: make(chan struct{}), done: make(chan struct{})}
	s.samples = append(s.samples, r.Read())
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				smp := r.Read()
				s.mu.Lock()
				s.samples = append(s.samples, smp)
				s.mu.Unlock()
			}
		}
	}()
	return s
}

// Finish stops the sampler, takes a last Sample, and returns them all,
// oldest first.
func (s *Sampler) Finish() []Sample {
	close(s.stop)
	<-s.done
	s.samples = append(s.samples, s.r.Read())
	return s.samples
}

// Usage is the CPU of a span between two samples, in percent of one core,
// and the server's memory at its peak over the span.
type Usage struct {
	Seconds   float64 `json:"seconds"`
	ServerPct float64 `json:"server_cpu_pct"` // of one core
	ClientPct float64 `json:"client_cpu_pct"` // of one core
	OtherPct  float64 `json:"other_cpu_pct"`  // of one core: everything else on the machine, steal included
	StealPct  float64 `json:"steal_pct"`      // of one core: time the hypervisor gave elsewhere
	IdlePct   float64 `json:"idle_pct"`       // of one core
	ServerCPU float64 `json:"server_cpu_s"`
	MemMaxMB  float64 `json:"server_mem_max_mb"`
}

// UsageBetween is the Usage from a to b, with the memory peak over span
// (the samples of the span, a and b among them).
func UsageBetween(a, b Sample, span []Sample) Usage {
	secs := b.At.Sub(a.At).Seconds()
	if secs <= 0 {
		return Usage{}
	}
	pct := func(t int64) float64 { return round(100*float64(t)/TicksPerSecond/secs, 1) }
	server := ServerTicks(a, b)
	u := Usage{Seconds: round(secs, 2), ServerPct: pct(server), ServerCPU: round(float64(server)/TicksPerSecond, 2)}
	client := max(b.Client-a.Client, 0)
	u.ClientPct = pct(client)
	busy := b.Busy - a.Busy
	u.OtherPct = pct(max(busy-server-client, 0))
	u.StealPct = pct(b.Steal - a.Steal)
	u.IdlePct = round(float64(runtime.NumCPU())*100-100*float64(busy)/TicksPerSecond/secs, 1)
	for _, s := range span {
		u.MemMaxMB = max(u.MemMaxMB, round(float64(s.ServerPSSKB)/1024, 1))
	}
	return u
}

func round(x float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(x*p) / p
}
