package media

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkPacedSessions measures what many Sessions sending a 20 ms
// packet every 20 ms cost the process: each iteration is one second of
// every Session playing audio (play), or idle (idle: the stream of
// silence), to a sink socket that never reads (the kernel drops what
// overflows it, so the figure is the senders' alone).
// It reports the CPU the process spent per second of wall time (cpu-%,
// in percent of one core), per packet sent (cpu-µs/pkt), and the packets
// sent more than 20 ms after their deadline (late/s).
//
//	go test ./internal/media -run '^$' -bench PacedSessions -benchtime 5x
func BenchmarkPacedSessions(b *testing.B) {
	for _, bc := range []struct {
		n    int
		play bool
	}{{100, true}, {1000, true}, {1000, false}} {
		name := fmt.Sprint(bc.n, "/play")
		if !bc.play {
			name = fmt.Sprint(bc.n, "/idle")
		}
		n := bc.n
		b.Run(name, func(b *testing.B) {
			sink, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
			if err != nil {
				b.Fatal(err)
			}
			defer sink.Close()
			_ = sink.SetReadBuffer(1024)
			to := sink.LocalAddr().(*net.UDPAddr).AddrPort()
			sessions := make([]*Session, n)
			for i := range sessions {
				s, err := ListenRTP(loopback, PortRange{})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				if err := s.Start(params(PCMU, to)); err != nil {
					b.Fatal(err)
				}
				sessions[i] = s
			}
			ctx, cancel := context.WithCancel(context.Background())
			var playing sync.WaitGroup
			pcm := tone(SampleRate*600, 440, 8000) // read, never written: shared
			for _, s := range sessions {
				if !bc.play {
					break
				}
				playing.Add(1)
				go func() {
					defer playing.Done()
					s.Play(ctx, pcm)
				}()
			}
			defer func() {
				cancel()
				playing.Wait()
			}()
			time.Sleep(time.Second) // every Session under way

			sent := func() (n, late uint64) {
				for _, s := range sessions {
					st := s.Stats()
					n += st.PacketsSent
					late += st.SendLate
				}
				return n, late
			}
			sent0, late0 := sent()
			cpu0, wall0 := cpuTime(), time.Now()
			for b.Loop() {
				time.Sleep(time.Second)
			}
			cpu, wall := cpuTime()-cpu0, time.Since(wall0)
			sent1, late1 := sent()
			b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "cpu-%")
			b.ReportMetric(float64(cpu.Microseconds())/float64(max(sent1-sent0, 1)), "cpu-µs/pkt")
			b.ReportMetric(float64(late1-late0)/wall.Seconds(), "late/s")
			b.ReportMetric(float64(sent1-sent0)/wall.Seconds(), "pkt/s")
		})
	}
}

// cpuTime is the CPU the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
