package call

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/switchback/switchback"
)

// maxJournal bounds the events a call keeps between writes: a caller
// pressing keys for an hour must not grow memory without limit.
const maxJournal = switchback.MaxEventsPerRecord

// journal is what a call adds to its conversation: the agent's latest
// state and the events since the last write. It goes to the store with
// the call's outcome, before the call is handed back (so the
// conversation's next call finds it), and once more when the call ends.
type journal struct {
	tenantID, externalID, transferID string
	now                              func() time.Time

	mu     sync.Mutex
	state  json.RawMessage                // nil: unchanged since the last take
	events []switchback.ConversationEvent // at most maxJournal: later ones are dropped
	// keepState is set when the conversation could not be read: the agent
	// started afresh, and its state must not replace the one stored.
	keepState bool
}

func (j *journal) record(t switchback.EventType, data map[string]string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.events) >= maxJournal {
		return
	}
	j.events = append(j.events, switchback.ConversationEvent{At: j.now(), TransferID: j.transferID, Type: t, Data: data})
}

// saveState keeps state, a JSON value, as the agent's latest.
func (j *journal) saveState(state json.RawMessage) bool {
	if !json.Valid(state) {
		return false
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.keepState {
		j.state = append(json.RawMessage(nil), state...)
	}
	return true
}

// take hands over the state and events gathered since the last take, as
// a record for the store: nil when the transfer names no conversation or
// nothing changed.
func (j *journal) take() *switchback.ConversationRecord {
	j.mu.Lock()
	defer j.mu.Unlock()
	state, events := j.state, j.events
	j.state, j.events = nil, nil
	if j.externalID == "" || state == nil && len(events) == 0 {
		return nil
	}
	return &switchback.ConversationRecord{TenantID: j.tenantID, ExternalID: j.externalID, State: state, Events: events}
}

// giveBack returns a record that could not be written, so the next take
// writes it again: its events before those recorded since, its state
// unless a newer one was saved.
func (j *journal) giveBack(r *switchback.ConversationRecord) {
	if r == nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.state == nil {
		j.state = r.State
	}
	events := append(r.Events, j.events...)
	if len(events) > maxJournal {
		events = events[:maxJournal]
	}
	j.events = events
}
