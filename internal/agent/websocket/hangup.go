package websocket

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// Registry holds the live calls of a process's websocket agents, so the
// REST hang-up can find the call a request names. One Registry serves
// every Factory of the process (Deps.Registry) and HangUpHandler.
type Registry struct {
	mu       sync.Mutex
	calls    map[string]*session   // by callSid
	accounts map[string][][32]byte // the SHA-256 of each authToken, by accountSid
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry {
	return &Registry{calls: map[string]*session{}, accounts: map[string][][32]byte{}}
}

func (r *Registry) addAccount(account string, token Secret) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sum := sha256.Sum256([]byte(token.Reveal()))
	for _, t := range r.accounts[account] {
		if t == sum {
			return
		}
	}
	r.accounts[account] = append(r.accounts[account], sum)
}

// add registers a session from its connect until its hand-back; a second
// stream of the same call (a websocket fallback) replaces the first.
func (r *Registry) add(s *session) {
	r.mu.Lock()
	r.calls[s.ids.call] = s
	r.mu.Unlock()
}

func (r *Registry) remove(s *session) {
	r.mu.Lock()
	if r.calls[s.ids.call] == s {
		delete(r.calls, s.ids.call)
	}
	r.mu.Unlock()
}

// len is how many calls are registered, for tests.
func (r *Registry) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

// authenticate reports, in time that does not depend on which token
// matched, whether token is an authToken of account's agents.
func (r *Registry) authenticate(account, token string) bool {
	sum := sha256.Sum256([]byte(token))
	r.mu.Lock()
	tokens := r.accounts[account]
	r.mu.Unlock()
	ok := 0
	for _, t := range tokens {
		ok |= subtle.ConstantTimeCompare(t[:], sum[:])
	}
	return ok == 1
}

// lookup returns the live call callSid of account whose agent's authToken
// is token, or nil: another agent's token does not end this one's call.
func (r *Registry) lookup(account, callSid, token string) *session {
	r.mu.Lock()
	s := r.calls[callSid]
	r.mu.Unlock()
	if s == nil || s.ids.account != account {
		return nil
	}
	want := sha256.Sum256([]byte(s.f.cfg.AuthToken.Reveal()))
	got := sha256.Sum256([]byte(token))
	if s.f.cfg.AuthToken == "" || subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
		return nil
	}
	return s
}

// HangUpPrefix is where HangUpHandler is mounted: Twilio's REST API root
// for calls, so a Twilio client whose base URL is Switchback's API (pipecat's
// TwilioFrameSerializer base_url) reaches it unchanged. The handler reads the
// rest of the path itself and answers other methods with 405.
const HangUpPrefix = "/2010-04-01/Accounts/"

// HangUpHandler serves Twilio's call update,
// POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json with the form
// Status=completed, for the live calls of reg: the agent ends its call as
// Twilio's REST API would let it, and the call is handed back with the
// agent's hangUpOutput. It authenticates as Twilio does, by HTTP basic auth
// with the accountSid and the agent's authToken, and answers with Twilio's
// JSON: the call resource, or an error with Twilio's code (20404 for a call
// that is not live here, which pipecat reads as "already ended"). It must
// be mounted outside the API's own authentication.
func HangUpHandler(reg *Registry, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		account, callSid, ok := parseCallPath(r.URL.Path)
		if !ok {
			twilioError(w, http.StatusNotFound, 20404, "The requested resource "+r.URL.Path+" was not found")
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			twilioError(w, http.StatusMethodNotAllowed, 20004, "Method not allowed")
			return
		}
		user, token, hasAuth := r.BasicAuth()
		if !hasAuth || user != account || !reg.authenticate(account, token) {
			w.Header().Set("WWW-Authenticate", `Basic realm="Twilio API"`)
			twilioError(w, http.StatusUnauthorized, 20003, "Authenticate")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			twilioError(w, http.StatusBadRequest, 20001, "The request body is not a form")
			return
		}
		s := reg.lookup(account, callSid, token)
		if s == nil {
			twilioError(w, http.StatusNotFound, 20404, "The requested resource "+r.URL.Path+" was not found")
			return
		}
		switch status := r.PostForm.Get("Status"); status {
		case "completed":
			select {
			case s.hangup <- struct{}{}:
			default: // already asked
			}
			log.Info("websocket agent hangs up its call over REST", "callSid", callSid, "transferId", s.info.TransferID)
			writeCall(w, s, "completed")
		case "canceled":
			// Twilio cancels only a call not yet answered; this one is.
			writeCall(w, s, "in-progress")
		default:
			twilioError(w, http.StatusBadRequest, 20001,
				"Switchback supports only Status=completed on a call, to hang it up")
		}
	})
}

// parseCallPath reads .../2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json.
func parseCallPath(path string) (account, call string, ok bool) {
	_, rest, found := strings.Cut(path, HangUpPrefix)
	if !found {
		return "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[1] != "Calls" {
		return "", "", false
	}
	call = strings.TrimSuffix(parts[2], ".json")
	if !validSID("AC", parts[0]) || !validSID("CA", call) {
		return "", "", false
	}
	return parts[0], call, true
}

// twilioTime is the format of the dates of Twilio's REST API (RFC 2822).
const twilioTime = "Mon, 02 Jan 2006 15:04:05 -0700"

// callJSON is the part of Twilio's call resource Switchback can fill.
type callJSON struct {
	SID         string  `json:"sid"`
	AccountSID  string  `json:"account_sid"`
	APIVersion  string  `json:"api_version"`
	Status      string  `json:"status"`
	Direction   string  `json:"direction"`
	From        string  `json:"from"`
	To          string  `json:"to"`
	DateCreated string  `json:"date_created"`
	DateUpdated string  `json:"date_updated"`
	StartTime   string  `json:"start_time"`
	EndTime     *string `json:"end_time"`
	URI         string  `json:"uri"`
}

func writeCall(w http.ResponseWriter, s *session, status string) {
	now := s.f.now().UTC()
	started := s.start.UTC().Format(twilioTime)
	c := callJSON{
		SID: s.ids.call, AccountSID: s.ids.account, APIVersion: "2010-04-01", Status: status,
		Direction: "inbound", From: s.info.From, To: s.info.To,
		DateCreated: started, DateUpdated: now.Format(twilioTime), StartTime: started,
		URI: HangUpPrefix + s.ids.account + "/Calls/" + s.ids.call + ".json",
	}
	if status == "completed" {
		end := now.Format(twilioTime)
		c.EndTime = &end
	}
	writeJSON(w, http.StatusOK, c)
}

// twilioError writes an error as Twilio's REST API does.
func twilioError(w http.ResponseWriter, status, code int, message string) {
	writeJSON(w, status, map[string]any{
		"code": code, "message": message, "status": status,
		"more_info": "https://www.twilio.com/docs/errors/" + strconv.Itoa(code),
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
