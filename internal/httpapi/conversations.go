package httpapi

import (
	"encoding/json"
	"net/http"

	"github.com/switchback/switchback"
)

// conversationJSON is a conversation: its legs, each the call transfer
// resource as GET shows it, the agent's state and the events so far.
type conversationJSON struct {
	ExternalConversationID string          `json:"externalConversationId"`
	CreatedAt              string          `json:"createdAt"`
	UpdatedAt              string          `json:"updatedAt,omitempty"`
	Legs                   []*transferJSON `json:"legs"`
	State                  json.RawMessage `json:"state,omitempty"`
	Events                 []eventJSON     `json:"events"`
}

type eventJSON struct {
	At         string               `json:"at"`
	TransferID string               `json:"transferId,omitempty"`
	Type       switchback.EventType `json:"type"`
	Data       map[string]string    `json:"data,omitempty"`
}

func encodeConversation(c *switchback.Conversation) *conversationJSON {
	out := &conversationJSON{
		ExternalConversationID: c.ExternalID, CreatedAt: formatTime(c.CreatedAt), UpdatedAt: formatTime(c.UpdatedAt),
		Legs: make([]*transferJSON, 0, len(c.Legs)), State: c.State, Events: make([]eventJSON, 0, len(c.Events)),
	}
	for _, t := range c.Legs {
		out.Legs = append(out.Legs, encodeTransfer(t))
	}
	for _, e := range c.Events {
		out.Events = append(out.Events, eventJSON{At: formatTime(e.At), TransferID: e.TransferID, Type: e.Type, Data: e.Data})
	}
	return out
}

// handleGetConversation serves GET /generativeagent/v1/conversations/{id}:
// the key's tenant's conversation of that externalConversationId.
func handleGetConversation(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		// The id is checked as a create checks it, so every id a transfer
		// can carry can be read back, and nothing else reaches the store.
		if id == "" {
			writeError(w, r, d.Log, switchback.FieldErrorf("externalConversationId", "is required"))
			return
		}
		if err := checkText("externalConversationId", id); err != nil {
			writeError(w, r, d.Log, err)
			return
		}
		info(r).conversation = id
		c, err := d.Transfers.Conversation(r.Context(), tenantOf(r), id)
		if err != nil {
			writeError(w, r, d.Log, err)
			return
		}
		writeJSON(w, http.StatusOK, encodeConversation(c))
	})
}
