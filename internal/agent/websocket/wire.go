package websocket

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"

	"github.com/switchback/switchback"
)

// The wire is Twilio Media Streams' (its "WebSocket Messages" page): the
// same field names, nesting and string-typed numbers, so an agent written
// for Twilio reads it unchanged. Switchback's own messages are flat objects
// whose event starts with "switchback.", which a stock agent ignores; they
// take no sequenceNumber, so a stock agent sees Twilio's numbering unbroken.

// Events Switchback sends and reads.
const (
	eventConnected  = "connected"
	eventStart      = "start"
	eventMedia      = "media"
	eventDTMF       = "dtmf"
	eventMark       = "mark"
	eventClear      = "clear"
	eventStop       = "stop"
	eventContext    = "switchback.context"
	eventHandBack   = "switchback.handback"
	eventState      = "switchback.state"
	eventTranscript = "switchback.transcript"
	eventCustom     = "switchback.event"
)

// Tracks, as Twilio names them: "inbound" is what the caller says;
// "outbound" what the caller hears, which after an INVITE hand-back is the
// return leg. DTMF messages name them with a _track suffix, as Twilio does.
const (
	trackInbound  = "inbound"
	trackOutbound = "outbound"
)

// ids are the Twilio-style identifiers of one stream.
type ids struct {
	account, call, stream string
}

// sid derives a Twilio-style SID: prefix and 32 hex digits of a hash of
// parts, so the same call gets the same SIDs on every node and restart.
func sid(prefix string, parts ...string) string {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	return prefix + hex.EncodeToString(h.Sum(nil)[:16])
}

// AccountSID is the accountSid a tenant's agents are given when their
// configuration sets none.
func AccountSID(tenantID string) string { return sid("AC", "switchback account", tenantID) }

// CallSID is the callSid of a transfer's call.
func CallSID(tenantID, transferID string) string {
	return sid("CA", "switchback call", tenantID, transferID)
}

// streamSID names one stream of a call: a call whose agent falls back to
// another websocket agent gets a second stream.
func streamSID(tenantID, transferID, agentURL string) string {
	return sid("MZ", "switchback stream", tenantID, transferID, agentURL)
}

type connectedMsg struct {
	Event    string `json:"event"`
	Protocol string `json:"protocol"`
	Version  string `json:"version"`
}

type startMsg struct {
	Event          string    `json:"event"`
	SequenceNumber string    `json:"sequenceNumber"`
	Start          startBody `json:"start"`
	StreamSID      string    `json:"streamSid"`
}

type startBody struct {
	AccountSID       string            `json:"accountSid"`
	StreamSID        string            `json:"streamSid"`
	CallSID          string            `json:"callSid"`
	Tracks           []string          `json:"tracks"`
	MediaFormat      mediaFormat       `json:"mediaFormat"`
	CustomParameters map[string]string `json:"customParameters"`
}

type mediaFormat struct {
	Encoding   string `json:"encoding"`
	SampleRate int    `json:"sampleRate"`
	Channels   int    `json:"channels"`
}

type mediaMsg struct {
	Event          string    `json:"event"`
	SequenceNumber string    `json:"sequenceNumber"`
	Media          mediaBody `json:"media"`
	StreamSID      string    `json:"streamSid"`
}

type mediaBody struct {
	Track     string `json:"track"`
	Chunk     string `json:"chunk"`
	Timestamp string `json:"timestamp"`
	Payload   string `json:"payload"`
}

type dtmfMsg struct {
	Event          string   `json:"event"`
	StreamSID      string   `json:"streamSid"`
	SequenceNumber string   `json:"sequenceNumber"`
	DTMF           dtmfBody `json:"dtmf"`
}

type dtmfBody struct {
	Track string `json:"track"`
	Digit string `json:"digit"`
}

type markMsg struct {
	Event          string   `json:"event"`
	SequenceNumber string   `json:"sequenceNumber"`
	StreamSID      string   `json:"streamSid"`
	Mark           markBody `json:"mark"`
}

type markBody struct {
	Name string `json:"name"`
}

type stopMsg struct {
	Event          string   `json:"event"`
	SequenceNumber string   `json:"sequenceNumber"`
	Stop           stopBody `json:"stop"`
	StreamSID      string   `json:"streamSid"`
}

type stopBody struct {
	AccountSID string `json:"accountSid"`
	CallSID    string `json:"callSid"`
}

// contextMsg is switchback.context: what Switchback knows of the call that
// Twilio's start has no field for.
type contextMsg struct {
	Event                  string                   `json:"event"`
	StreamSID              string                   `json:"streamSid"`
	TransferID             string                   `json:"transferId"`
	ExternalConversationID string                   `json:"externalConversationId"`
	Type                   switchback.Type          `json:"type"`
	ReturnTransferType     string                   `json:"returnTransferType,omitempty"`
	From                   string                   `json:"from,omitempty"`
	To                     string                   `json:"to,omitempty"`
	InputContext           *switchback.InputContext `json:"inputContext"`
	Conversation           *conversationJSON        `json:"conversation,omitempty"`
}

// conversationJSON is a conversation as GET /conversations/{id} shows it,
// less what is not the agent's business (SIP credentials, phone numbers).
type conversationJSON struct {
	ExternalConversationID string          `json:"externalConversationId"`
	CreatedAt              string          `json:"createdAt"`
	UpdatedAt              string          `json:"updatedAt,omitempty"`
	Legs                   []legJSON       `json:"legs"`
	State                  json.RawMessage `json:"state,omitempty"`
	Events                 []eventJSON     `json:"events"`
}

type legJSON struct {
	ID             string                    `json:"id"`
	Status         switchback.Status         `json:"status"`
	Type           switchback.Type           `json:"type"`
	CreatedAt      string                    `json:"createdAt"`
	CallReceivedAt string                    `json:"callReceivedAt,omitempty"`
	CompletedAt    string                    `json:"completedAt,omitempty"`
	InputContext   *switchback.InputContext  `json:"inputContext,omitempty"`
	OutputContext  *switchback.OutputContext `json:"outputContext,omitempty"`
}

type eventJSON struct {
	At         string               `json:"at"`
	TransferID string               `json:"transferId,omitempty"`
	Type       switchback.EventType `json:"type"`
	Data       map[string]string    `json:"data,omitempty"`
}

// timeFormat is the API's: RFC 3339 in UTC with milliseconds.
const timeFormat = "2006-01-02T15:04:05.000Z"

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(timeFormat)
}

// encodeConversation is the conversation a call of transfer self
// continues, as switchback.context gives it: its earlier legs, without the
// call's own (the store's record already lists it, ONGOING).
func encodeConversation(c *switchback.Conversation, self string) *conversationJSON {
	if c == nil {
		return nil
	}
	out := &conversationJSON{
		ExternalConversationID: c.ExternalID, CreatedAt: formatTime(c.CreatedAt), UpdatedAt: formatTime(c.UpdatedAt),
		Legs: make([]legJSON, 0, len(c.Legs)), State: c.State, Events: make([]eventJSON, 0, len(c.Events)),
	}
	for _, t := range c.Legs {
		if t == nil || t.ID == self {
			continue
		}
		out.Legs = append(out.Legs, legJSON{
			ID: t.ID, Status: t.Status, Type: t.Type, CreatedAt: formatTime(t.CreatedAt),
			CallReceivedAt: formatTime(t.CallReceivedAt), CompletedAt: formatTime(t.CompletedAt),
			InputContext: t.InputContext, OutputContext: t.OutputContext,
		})
	}
	for _, e := range c.Events {
		out.Events = append(out.Events, eventJSON{At: formatTime(e.At), TransferID: e.TransferID, Type: e.Type, Data: e.Data})
	}
	return out
}

// customParameters are start's customParameters: the transfer's input
// variables, then Switchback's own keys, which win a clash (the variable is
// still in switchback.context).
func customParameters(info *switchback.CallInfo) map[string]string {
	p := map[string]string{}
	if info.Input != nil {
		for k, v := range info.Input.InputVariables {
			p[k] = v
		}
	}
	p["transferId"] = info.TransferID
	p["externalConversationId"] = info.ExternalConversationID
	p["taskName"] = ""
	if info.Input != nil {
		p["taskName"] = info.Input.TaskName
	}
	p["from"] = info.From
	p["to"] = info.To
	return p
}

// appendMedia appends a media message to b without allocating: it is sent
// 50 times a second per call. It writes exactly what json.Marshal of a
// mediaMsg would (wire_test checks), the SIDs and track being plain ASCII.
func appendMedia(b []byte, stream, track string, seq, chunk, timestampMS int64, ulaw []byte) []byte {
	b = append(b, `{"event":"media","sequenceNumber":"`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `","media":{"track":"`...)
	b = append(b, track...)
	b = append(b, `","chunk":"`...)
	b = strconv.AppendInt(b, chunk, 10)
	b = append(b, `","timestamp":"`...)
	b = strconv.AppendInt(b, timestampMS, 10)
	b = append(b, `","payload":"`...)
	b = base64.StdEncoding.AppendEncode(b, ulaw)
	b = append(b, `"},"streamSid":"`...)
	b = append(b, stream...)
	return append(b, `"}`...)
}

// inboundMsg is every message an agent may send, read in one pass: the
// Twilio messages nest their fields, Switchback's are flat. Variable parts
// stay raw, so a field of one kind of message cannot spoil another's.
type inboundMsg struct {
	Event string `json:"event"`
	Media *struct {
		Payload string `json:"payload"`
	} `json:"media"`
	Mark *struct {
		Name string `json:"name"`
	} `json:"mark"`

	OutputContext json.RawMessage `json:"outputContext"`
	State         json.RawMessage `json:"state"`
	FinishAudio   *bool           `json:"finishAudio"`

	Role  string `json:"role"`
	Text  string `json:"text"`
	Final *bool  `json:"final"`

	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}
