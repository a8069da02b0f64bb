package websocket

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/media"
)

// Bounds of a session.
const (
	// outQueue is how many messages wait for the agent's socket: 2.5 s of
	// media. Media that does not fit is dropped and counted; the rest waits.
	outQueue = 128
	// inQueue is how many parsed messages wait for the call; past it the
	// reader stops reading and TCP holds the agent back.
	inQueue = 64
	// defaultWriteTimeout is how long one write may block before the agent
	// is taken to have stopped reading and the connection is cut.
	defaultWriteTimeout = 5 * time.Second
	// closeWait is how long the close handshake may take before the
	// connection is cut: the call is over, nothing waits on the agent.
	closeWait = time.Second
	// maxAgentEvents bounds the events an agent records on one call, so a
	// chatty agent cannot push its call's record past what a store takes
	// (switchback.MaxEventsPerRecord, shared with Switchback's own events).
	maxAgentEvents = 500
	// maxTranscriptBytes bounds one transcript's text; longer is cut.
	maxTranscriptBytes = 8 << 10
	// maxMarkName bounds a mark's name, echoed back as it came.
	maxMarkName = 256
)

// stats count what a session dropped or ignored; they are logged once, as
// the call ends, and their first occurrence as it happens.
type stats struct {
	malformed    atomic.Int64 // not JSON, or a field of the wrong type
	unknown      atomic.Int64 // an event Switchback does not take
	playoutFull  atomic.Int64 // agent audio dropped: the caller's playout queue was full
	mediaDropped atomic.Int64 // caller audio dropped: the agent's socket was behind
	eventsDrop   atomic.Int64 // events past maxAgentEvents
	late         atomic.Int64 // media, marks or clears after the hand-back, ignored
}

// session is one call's stream to a websocket agent.
type session struct {
	f     *Factory
	info  *switchback.CallInfo
	ids   ids
	conn  *websocket.Conn
	raw   *rawConn
	log   *slog.Logger
	start time.Time

	seq, inChunk, outChunk atomic.Int64

	in         chan inbound
	readerDone chan struct{}
	readErr    error // why the reader stopped; read once in is closed
	stopped    chan struct{}

	outMu      sync.Mutex
	outClosed  bool
	out        chan *[]byte
	writerDone chan struct{}
	watchdog   *time.Timer
	stuck      atomic.Bool // a write outlived writeTimeout

	hangup chan struct{}

	teardownOnce sync.Once
	teardownDone chan struct{}
	closeOnce    sync.Once

	mu       sync.Mutex
	taken    switchback.Agent // the fallback's agent, once it took over
	recorded int              // events the agent recorded

	stats stats
}

var (
	_ switchback.Agent    = (*session)(nil)
	_ switchback.Follower = (*followingSession)(nil)
	_ io.Closer           = (*session)(nil)
)

// followingSession is a session that keeps listening after an INVITE
// hand-back.
type followingSession struct{ *session }

func newSession(f *Factory, info *switchback.CallInfo, id ids, conn *websocket.Conn, raw *rawConn) *session {
	s := &session{
		f: f, info: info, ids: id, conn: conn, raw: raw, start: f.now(),
		log: f.log.With("transferId", info.TransferID, "streamSid", id.stream),
		in:  make(chan inbound, inQueue), readerDone: make(chan struct{}), stopped: make(chan struct{}),
		out: make(chan *[]byte, outQueue), writerDone: make(chan struct{}),
		hangup: make(chan struct{}, 1), teardownDone: make(chan struct{}),
	}
	s.watchdog = time.AfterFunc(time.Hour, func() {
		s.stuck.Store(true)
		s.raw.close()
	})
	s.watchdog.Stop()
	return s
}

// run starts the reader and the writer; teardown stops them.
func (s *session) run() {
	go s.readLoop()
	go s.writeLoop()
	if s.f.reg != nil {
		s.f.reg.add(s)
	}
}

func (s *session) nextSeq() string { return strconv.FormatInt(s.seq.Add(1), 10) }

// Run streams the call to the agent and what the agent sends to the call,
// until the agent hands the call back (switchback.handback, or the REST
// hang-up) or the call ends. When the connection is lost, or the agent
// closes it without a hand-back, the fallback takes over the call.
func (s *session) Run(ctx context.Context, call switchback.Call) (*switchback.HandBack, error) {
	audio, digits, marks := call.Audio(), call.Digits(), call.Marks()
	for {
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case f, ok := <-audio:
			if !ok {
				audio = nil
			} else if f.Leg == switchback.LegCaller {
				s.sendMedia(trackInbound, &s.inChunk, f)
			}
		case d, ok := <-digits:
			if !ok {
				digits = nil
			} else if d.Leg == switchback.LegCaller {
				s.sendDTMF(d)
			}
		case name, ok := <-marks:
			if !ok {
				marks = nil
			} else {
				s.sendMark(name)
			}
		case <-s.hangup:
			s.log.Info("the agent hung up over REST")
			return s.handBack(&switchback.HandBack{Output: s.f.cfg.HangUpOutput.context(s.info.Input), FinishAudio: true})
		case m, ok := <-s.in:
			if !ok {
				return s.takeOver(ctx, call, s.lostReason())
			}
			if hb, err, done := s.apply(call, m); done {
				if err != nil {
					s.leaveRegistry()
					go s.teardown()
					return nil, err
				}
				return s.handBack(hb)
			}
		}
	}
}

// handBack ends the agent's turn: the session leaves the REST hang-up's
// registry and, unless it keeps listening, sends stop and closes.
func (s *session) handBack(hb *switchback.HandBack) (*switchback.HandBack, error) {
	s.leaveRegistry()
	if !s.follows() {
		// Twilio's stream ends when the call leaves it; the close is not
		// waited for, so the hand-back is not delayed by a slow agent.
		go s.teardown()
	}
	return hb, nil
}

// follows reports whether the session keeps listening after its hand-back:
// an INVITE return with listenAfterInviteReturn on.
func (s *session) follows() bool {
	return s.info.Return == switchback.ReturnINVITE && *s.f.cfg.ListenAfterInviteReturn
}

// leaveRegistry ends the agent's say over the call: the REST hang-up no
// longer finds it (Twilio's 20404, "already ended").
func (s *session) leaveRegistry() {
	if s.f.reg != nil {
		s.f.reg.remove(s)
	}
}

// apply carries one message of the agent out on the call; done reports a
// hand-back, which err makes a failed one (the call goes back as SYSTEM
// with err as the reason).
func (s *session) apply(call switchback.Call, m inbound) (hb *switchback.HandBack, err error, done bool) {
	switch m.kind {
	case inMedia:
		if err := call.Enqueue(m.pcm); errors.Is(err, switchback.ErrPlayoutFull) {
			s.count(&s.stats.playoutFull, "the caller's playout queue is full: agent audio dropped", nil)
		}
	case inMark:
		if err := call.Mark(m.name); err != nil && !errors.Is(err, switchback.ErrCallOver) {
			s.count(&s.stats.late, "mark not queued", err)
		}
	case inClear:
		call.Clear()
		// When the caller's audio went silent, for whoever measures a
		// barge-in (the end-to-end tests do).
		s.log.Debug("the agent cleared its queued audio")
	case inHandBack:
		if m.err != nil {
			return nil, m.err, true
		}
		return m.hb, nil, true
	default:
		s.record(call, m)
	}
	return nil, nil, false
}

// record carries out what an agent may still send after its hand-back:
// state, transcripts and events.
func (s *session) record(call switchback.Call, m inbound) {
	switch m.kind {
	case inState:
		call.SaveState(m.state)
	case inTranscript, inCustom:
		s.mu.Lock()
		ok := s.recorded < maxAgentEvents
		if ok {
			s.recorded++
		}
		s.mu.Unlock()
		if !ok {
			s.count(&s.stats.eventsDrop, "the agent recorded too many events: dropped", nil)
			return
		}
		call.Record(m.event, m.data)
	case inMedia, inMark, inClear, inHandBack:
		s.stats.late.Add(1)
	}
}

// Follow streams both legs to the agent while they are bridged after an
// INVITE hand-back: the caller as track inbound, the return leg as
// outbound, and both legs' digits; what the agent records still lands in
// the conversation. It returns when the call ends or the agent leaves.
func (s *followingSession) Follow(ctx context.Context, call switchback.Call) error {
	if a := s.takenBy(); a != nil {
		if fa, ok := a.(switchback.Follower); ok {
			return fa.Follow(ctx, call)
		}
		return nil
	}
	audio, digits, marks := call.Audio(), call.Digits(), call.Marks()
	for {
		select {
		case <-ctx.Done():
			return nil
		case f, ok := <-audio:
			if !ok {
				audio = nil
			} else if f.Leg == switchback.LegReturn {
				s.sendMedia(trackOutbound, &s.outChunk, f)
			} else {
				s.sendMedia(trackInbound, &s.inChunk, f)
			}
		case d, ok := <-digits:
			if !ok {
				digits = nil
			} else {
				s.sendDTMF(d)
			}
		case _, ok := <-marks:
			if !ok {
				marks = nil
			}
		case m, ok := <-s.in:
			if !ok {
				s.log.Info("the agent left the bridged call", "reason", s.lostReason())
				return nil
			}
			s.record(call, m)
		}
	}
}

// takeOver gives the call to the fallback after the agent's connection was
// lost: the agent's queued audio is dropped, why is recorded, and the
// fallback's agent runs on the same call.
func (s *session) takeOver(ctx context.Context, call switchback.Call, reason string) (*switchback.HandBack, error) {
	s.leaveRegistry()
	go s.teardown()
	call.Clear()
	for drained := false; !drained; { // the dead agent's marks mean nothing to the fallback
		select {
		case <-call.Marks():
		default:
			drained = true
		}
	}
	s.log.Warn("websocket agent lost, its fallback takes the call", "reason", reason, "fallback", s.f.fallbackName)
	call.Record(switchback.EventAgentFallback, map[string]string{"reason": reason, "fallback": s.f.fallbackName})
	a, err := s.f.fallback.NewAgent(ctx, s.info)
	if err != nil {
		return nil, fmt.Errorf("websocket agent: %s; its fallback (%s): %w", reason, s.f.fallbackName, err)
	}
	s.mu.Lock()
	s.taken = a
	s.mu.Unlock()
	return a.Run(ctx, call)
}

func (s *session) takenBy() switchback.Agent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.taken
}

// lostReason says why the connection ended, once the reader has stopped.
func (s *session) lostReason() string {
	err := s.readErr
	var ce websocket.CloseError
	switch {
	case s.stuck.Load():
		return fmt.Sprintf("the agent stopped reading: a write waited over %v", s.f.writeTimeout)
	case errors.As(err, &ce):
		reason := ce.Reason
		if len(reason) > 64 {
			reason = reason[:64]
		}
		if reason != "" {
			return fmt.Sprintf("the agent closed the connection without a hand-back (status %d: %s)", ce.Code, reason)
		}
		return fmt.Sprintf("the agent closed the connection without a hand-back (status %d)", ce.Code)
	case errors.Is(err, websocket.ErrMessageTooBig):
		return fmt.Sprintf("the agent sent a message over %d bytes", s.f.cfg.MaxMessageBytes)
	case err == nil:
		return "the connection to the agent was closed"
	}
	return "the connection to the agent dropped: " + s.f.scrub(err)
}

// Close ends the stream: stop, then the close handshake, bounded; and
// closes the fallback's agent if it took over. The runtime calls it once,
// after Run and Follow have returned.
func (s *session) Close() error {
	s.closeOnce.Do(func() {
		s.leaveRegistry()
		s.teardown()
		s.logStats()
		if c, ok := s.takenBy().(io.Closer); ok {
			c.Close()
		}
	})
	return nil
}

// teardown sends stop (when the connection still works), closes the
// connection and waits for the reader and the writer. It runs once; every
// later call waits for the first.
func (s *session) teardown() {
	s.teardownOnce.Do(func() {
		defer close(s.teardownDone)
		s.sendStop()
		s.outMu.Lock()
		s.outClosed = true
		close(s.out)
		s.outMu.Unlock()
		<-s.writerDone // each write is bounded by the watchdog
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.conn.Close(websocket.StatusNormalClosure, "call ended")
		}()
		t := time.NewTimer(closeWait)
		select {
		case <-done:
		case <-t.C:
			s.raw.close()
			<-done
		}
		t.Stop()
		close(s.stopped)
		<-s.readerDone
		s.watchdog.Stop()
	})
	<-s.teardownDone
}

func (s *session) sendStop() {
	b := s.control(stopMsg{
		Event: eventStop, SequenceNumber: s.nextSeq(), StreamSID: s.ids.stream,
		Stop: stopBody{AccountSID: s.ids.account, CallSID: s.ids.call},
	})
	s.send(b, false)
}

func (s *session) sendMark(name string) {
	s.send(s.control(markMsg{Event: eventMark, SequenceNumber: s.nextSeq(), StreamSID: s.ids.stream, Mark: markBody{Name: name}}), false)
}

func (s *session) sendDTMF(d switchback.Digit) {
	track := trackInbound + "_track"
	if d.Leg == switchback.LegReturn {
		track = trackOutbound + "_track"
	}
	s.send(s.control(dtmfMsg{
		Event: eventDTMF, StreamSID: s.ids.stream, SequenceNumber: s.nextSeq(),
		DTMF: dtmfBody{Track: track, Digit: string(d.Digit)},
	}), false)
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func (s *session) control(msg any) *[]byte {
	b, err := json.Marshal(msg)
	if err != nil { // the messages are plain structs of strings
		panic(err)
	}
	return &b
}

// sendMedia sends one frame; it never blocks and does not allocate.
func (s *session) sendMedia(track string, chunk *atomic.Int64, f switchback.AudioFrame) {
	bp := bufPool.Get().(*[]byte)
	var ulaw [320]byte
	n := len(f.PCM)
	if n > len(ulaw) {
		n = len(ulaw)
	}
	media.EncodeULaw(ulaw[:n], f.PCM[:n])
	ts := f.At.Sub(s.start).Milliseconds()
	if ts < 0 {
		ts = 0
	}
	*bp = appendMedia((*bp)[:0], s.ids.stream, track, s.seq.Add(1), chunk.Add(1), ts, ulaw[:n])
	s.send(bp, true)
}

// send queues b for the writer. Media is dropped when the queue is full;
// other messages wait, for at most a write's timeout.
func (s *session) send(b *[]byte, droppable bool) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	if s.outClosed {
		return
	}
	if droppable {
		select {
		case s.out <- b:
		default:
			s.count(&s.stats.mediaDropped, "the agent's socket is behind: caller audio dropped", nil)
			bufPool.Put(b)
		}
		return
	}
	s.out <- b
}

// writeLoop writes the queued messages in order. After a failed write it
// keeps draining the queue, so senders never wait on a dead connection.
func (s *session) writeLoop() {
	defer close(s.writerDone)
	failed := false
	for b := range s.out {
		if !failed {
			s.watchdog.Reset(s.f.writeTimeout)
			err := s.conn.Write(context.Background(), websocket.MessageText, *b)
			if !s.watchdog.Stop() || err != nil {
				failed = true
				s.raw.close() // the reader then fails too, and Run falls back
			}
		}
		if cap(*b) <= 1024 {
			bufPool.Put(b)
		}
	}
}

// inbound is a message of the agent, parsed and checked by the reader.
type inbound struct {
	kind  inKind
	pcm   []int16
	name  string
	hb    *switchback.HandBack
	err   error
	state json.RawMessage
	event switchback.EventType
	data  map[string]string
}

type inKind int

const (
	inMedia inKind = iota
	inMark
	inClear
	inHandBack
	inState
	inTranscript
	inCustom
)

// readLoop reads the agent's messages until the connection ends. Binary
// frames are read as text: some agents send their JSON that way.
func (s *session) readLoop() {
	defer close(s.readerDone)
	defer close(s.in)
	var buf bytes.Buffer
	for {
		_, r, err := s.conn.Reader(context.Background())
		if err == nil {
			buf.Reset()
			_, err = buf.ReadFrom(r)
		}
		if err != nil {
			s.readErr = err
			return
		}
		m, ok := s.parse(buf.Bytes())
		if !ok {
			continue
		}
		select {
		case s.in <- m:
		case <-s.stopped:
			return
		}
	}
}

// parse reads one message; ok is false for one that is ignored (counted).
func (s *session) parse(b []byte) (m inbound, ok bool) {
	var msg inboundMsg
	if err := json.Unmarshal(b, &msg); err != nil {
		// A hand-back the agent got wrong still ends its turn: the call goes
		// back as SYSTEM with the reason, rather than waiting on an agent
		// that believes it is done.
		var e struct {
			Event string `json:"event"`
		}
		if json.Unmarshal(b, &e) == nil && e.Event == eventHandBack {
			return inbound{kind: inHandBack, err: fmt.Errorf("the agent's %s is malformed: %v", eventHandBack, err)}, true
		}
		s.count(&s.stats.malformed, "malformed message from the agent", err)
		return m, false
	}
	switch msg.Event {
	case eventMedia:
		if msg.Media == nil || msg.Media.Payload == "" {
			s.count(&s.stats.malformed, "media without a payload", nil)
			return m, false
		}
		ulaw, err := base64.StdEncoding.DecodeString(msg.Media.Payload)
		if err != nil || len(ulaw) == 0 {
			s.count(&s.stats.malformed, "media payload is not base64", err)
			return m, false
		}
		pcm := make([]int16, len(ulaw))
		media.DecodeULaw(pcm, ulaw)
		return inbound{kind: inMedia, pcm: pcm}, true
	case eventMark:
		if msg.Mark == nil || msg.Mark.Name == "" || len(msg.Mark.Name) > maxMarkName {
			s.count(&s.stats.malformed, "mark without a name, or with one too long", nil)
			return m, false
		}
		return inbound{kind: inMark, name: msg.Mark.Name}, true
	case eventClear:
		return inbound{kind: inClear}, true
	case eventHandBack:
		hb, err := s.parseHandBack(&msg)
		return inbound{kind: inHandBack, hb: hb, err: err}, true
	case eventState:
		if len(msg.State) == 0 || string(msg.State) == "null" {
			s.count(&s.stats.malformed, "switchback.state without a state", nil)
			return m, false
		}
		return inbound{kind: inState, state: msg.State}, true
	case eventTranscript:
		if msg.Role == "" || len(msg.Role) > 32 {
			s.count(&s.stats.malformed, "switchback.transcript without a role, or with one too long", nil)
			return m, false
		}
		final := msg.Final == nil || *msg.Final
		return inbound{kind: inTranscript, event: switchback.EventTranscript, data: map[string]string{
			"role": msg.Role, "text": truncate(msg.Text, maxTranscriptBytes), "final": strconv.FormatBool(final),
		}}, true
	case eventCustom:
		data := map[string]string{}
		if len(msg.Data) > 0 && string(msg.Data) != "null" {
			if err := json.Unmarshal(msg.Data, &data); err != nil || len(data) > 32 {
				s.count(&s.stats.malformed, "switchback.event data must be an object of at most 32 strings", err)
				return m, false
			}
		}
		if !validEventName(msg.Type) {
			s.count(&s.stats.malformed, "switchback.event type must be 1 to 64 letters, digits, '.', '_' or '-'", nil)
			return m, false
		}
		return inbound{kind: inCustom, event: switchback.EventType(CustomEventPrefix + msg.Type), data: data}, true
	}
	s.count(&s.stats.unknown, "unknown event from the agent", nil)
	return m, false
}

// CustomEventPrefix starts the type of every event an agent records with
// switchback.event, so it never passes for one of Switchback's own.
const CustomEventPrefix = "custom."

func (s *session) parseHandBack(msg *inboundMsg) (*switchback.HandBack, error) {
	if len(msg.OutputContext) == 0 || string(msg.OutputContext) == "null" {
		return nil, errors.New("the agent's switchback.handback has no outputContext")
	}
	var oc switchback.OutputContext
	if err := json.Unmarshal(msg.OutputContext, &oc); err != nil {
		return nil, fmt.Errorf("the agent's switchback.handback has a malformed outputContext: %v", err)
	}
	switch oc.TransferType {
	case switchback.TransferAgent, switchback.TransferSystem:
	default:
		return nil, fmt.Errorf("the agent's switchback.handback has transferType %q, not AGENT or SYSTEM", truncate(string(oc.TransferType), 32))
	}
	if oc.CurrentTaskName == "" && s.info.Input != nil {
		oc.CurrentTaskName = s.info.Input.TaskName
	}
	hb := &switchback.HandBack{Output: &oc, FinishAudio: msg.FinishAudio == nil || *msg.FinishAudio}
	if len(msg.State) > 0 && string(msg.State) != "null" {
		hb.State = msg.State // json.RawMessage copies what it decodes
	}
	return hb, nil
}

func validEventName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// truncate cuts s to at most n bytes on a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// count adds one to c and logs the first of its kind.
func (s *session) count(c *atomic.Int64, what string, err error) {
	if c.Add(1) > 1 {
		return
	}
	args := []any{}
	if err != nil {
		args = append(args, "err", err.Error())
	}
	s.log.Warn(what+" (further ones counted, not logged)", args...)
}

func (s *session) logStats() {
	st := &s.stats
	if st.malformed.Load()+st.unknown.Load()+st.playoutFull.Load()+st.mediaDropped.Load()+st.eventsDrop.Load()+st.late.Load() == 0 {
		return
	}
	s.log.Info("websocket agent stream ended with drops",
		"malformed", st.malformed.Load(), "unknown", st.unknown.Load(),
		"agentAudioDropped", st.playoutFull.Load(), "callerAudioDropped", st.mediaDropped.Load(),
		"eventsDropped", st.eventsDrop.Load(), "ignoredAfterHandBack", st.late.Load())
}
