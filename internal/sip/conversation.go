package sip

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/switchback/switchback"
)

// journal is what a call adds to its conversation: the agent's latest
// state and the events since the last flush. It is written to the store
// before the call is handed back (so the conversation's next call finds
// it) and once more when the call ends.
type journal struct {
	c *call

	mu     sync.Mutex
	state  json.RawMessage // nil: unchanged since the last flush
	events []switchback.ConversationEvent
	// keepState is set when the conversation could not be read: the agent
	// started afresh, and its state must not replace the one stored.
	keepState bool
}

// maxJournal bounds the events a call keeps between flushes: a caller
// pressing keys for an hour must not grow memory without limit.
const maxJournal = switchback.MaxEventsPerRecord

func (j *journal) record(t switchback.EventType, data map[string]string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.events) >= maxJournal {
		return
	}
	j.events = append(j.events, switchback.ConversationEvent{At: time.Now(), TransferID: j.c.t.ID, Type: t, Data: data})
}

func (j *journal) saveState(state json.RawMessage) {
	if !json.Valid(state) {
		return
	}
	j.mu.Lock()
	if !j.keepState {
		j.state = append(json.RawMessage(nil), state...)
	}
	j.mu.Unlock()
}

// take hands over the state and events gathered since the last take, as
// a record for the store: nil when the transfer names no conversation or
// nothing changed.
func (j *journal) take() *switchback.ConversationRecord {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.c.t.ExternalConversationID == "" || j.state == nil && len(j.events) == 0 {
		j.state, j.events = nil, nil
		return nil
	}
	rec := &switchback.ConversationRecord{TenantID: j.c.t.TenantID, ExternalID: j.c.t.ExternalConversationID,
		State: j.state, Events: j.events}
	j.state, j.events = nil, nil
	return rec
}

// flush writes what take hands over, for a call whose transfer is already
// complete (a bridged call's last events).
func (j *journal) flush() {
	rec := j.take()
	if rec == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := j.c.e.svc.RecordConversation(ctx, rec); err != nil {
		j.c.log.Warn("record the conversation", "err", err)
	}
}

// loadConversation reads the conversation a call continues: nil on its
// first call, or when the store cannot say (the agent then starts afresh).
func (c *call) loadConversation() *switchback.Conversation {
	if c.t.ExternalConversationID == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var conv *switchback.Conversation
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if conv, err = c.e.svc.Conversation(ctx, c.t.TenantID, c.t.ExternalConversationID); err == nil ||
			switchback.ErrorCode(err) == switchback.ENOTFOUND {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if switchback.ErrorCode(err) == switchback.ENOTFOUND {
		return nil
	} else if err != nil {
		// The agent starts afresh, and what it saves must not overwrite
		// the state the conversation's next call should resume from.
		c.log.Warn("read the conversation; the agent starts afresh and its state is not kept", "err", err)
		c.journal.mu.Lock()
		c.journal.keepState = true
		c.journal.mu.Unlock()
		return nil
	}
	if len(conv.State) == 0 && len(conv.Events) == 0 {
		return nil // this is its first call
	}
	return conv
}

func (a *agentCall) Conversation() *switchback.Conversation { return a.c.conv }
func (a *agentCall) SaveState(state json.RawMessage)        { a.c.journal.saveState(state) }
func (a *agentCall) Record(t switchback.EventType, data map[string]string) {
	a.c.journal.record(t, data)
}
