package config

import (
	"github.com/switchback/switchback/internal/agent/websocket"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestExample(t *testing.T) {
	listen := true
	got, err := Load(writeConfig(t, Example()), nil)
	if err != nil {
		t.Fatalf("Load(Example()) error:\n%v", err)
	}
	want := Config{
		API: API{Listen: "127.0.0.1:8080", MaxBodyBytes: 65536, MaxWait: Duration(60 * time.Second),
			ReadHeaderTimeout: Duration(10 * time.Second), ReadBodyTimeout: Duration(5 * time.Second),
			WriteTimeout: Duration(10 * time.Second), IdleTimeout: Duration(2 * time.Minute),
			MaxHeaderBytes: 32768, MaxConnections: 4096, AuthFailureLimit: RateLimit{RequestsPerSecond: 2, Burst: 20}},
		Store: Store{Driver: "sqlite", DSN: "switchback.db"},
		Pool: Pool{
			Quarantine: Duration(10 * time.Second),
			Numbers: []NumberBlock{
				{Country: "US", Numbers: []string{"+12025550100-+12025550199"}},
				{Country: "GB", Tenant: "globex", Numbers: []string{"+442079460000-0099", "+442079460500"}},
			},
		},
		Expiry: Expiry{SweepInterval: Duration(time.Second), MaxCallDuration: Duration(4 * time.Hour)},
		SIP: SIP{
			Listen:            "127.0.0.1:5060",
			Realm:             "switchback",
			RTPPorts:          PortRange{Min: 20000, Max: 20999},
			RTPTimeout:        Duration(30 * time.Second),
			SessionExpires:    Duration(1800 * time.Second),
			NonceTTL:          Duration(30 * time.Second),
			MaxPendingInvites: 1000,
			ReferTimeout:      Duration(30 * time.Second),
			ReturnTimeout:     Duration(30 * time.Second),
			DigestAlgorithms:  []string{"SHA-256", "MD5"},
			Trunks: []Trunk{{
				Name:  "carrier",
				Allow: []string{"192.0.2.0/24", "2001:db8::10"},
				Users: []SIPUser{{Username: "carrier", Password: "change-me"}},
			}},
		},
		Tenants: []Tenant{
			{
				ID:                        "acme",
				Name:                      "Acme Corp",
				PhoneNumberTTL:            Duration(60 * time.Second),
				SIPTTL:                    Duration(60 * time.Second),
				DefaultReturnTransferType: "BYE",
				RateLimit:                 RateLimit{RequestsPerSecond: 200, Burst: 400},
				SIP: TenantSIP{
					User:       "acme",
					Allow:      []string{"198.51.100.0/24"},
					Users:      []SIPUser{{Username: "acme-ivr", Password: "change-me"}},
					MaxCalls:   100,
					ReturnAuth: SIPUser{Username: "switchback", Password: "change-me"},
				},
				Agents: []AgentConfig{{Task: "billing", Menu: &Menu{
					Greeting: "builtin:chime",
					Collect:  []Collect{{Name: "account", Prompt: "", MaxDigits: 16, Terminator: "#"}},
					Choices: map[string]Outcome{
						"1": {
							TransferType:       "AGENT",
							TaskName:           "billing_agent",
							ReferenceVariables: []string{"accountNumber", "account"},
							TransferVariables:  []string{"account"},
							Set:                map[string]string{"reason": "caller asked for an agent"},
						},
						"*": {TransferType: "SYSTEM", TaskName: "main_menu"},
					},
					DigitTimeout: Duration(5 * time.Second),
					Default:      Outcome{TransferType: "SYSTEM", TaskName: "billing_done", TransferVariables: []string{"account"}},
				}}, {Task: "voice", WebSocket: &websocket.Config{
					URL: "wss://voice.acme.example/twilio", AuthToken: "change-me",
					Headers:                 map[string]websocket.Secret{"Authorization": "Bearer change-me"},
					ConnectTimeout:          websocket.Duration(3 * time.Second),
					Fallback:                websocket.Fallback{Task: "billing"},
					HangUpOutput:            &websocket.Output{TransferType: "SYSTEM", CurrentTaskName: "voice_done"},
					ListenAfterInviteReturn: &listen, MaxMessageBytes: 262144,
				}}},
			},
			{
				ID:                        "globex",
				Name:                      "Globex",
				PhoneNumberTTL:            Duration(60 * time.Second),
				SIPTTL:                    Duration(2 * time.Minute),
				DefaultReturnTransferType: "REFER",
				RateLimit:                 RateLimit{RequestsPerSecond: 200, Burst: 400},
				SIP:                       TenantSIP{User: "globex", Allow: []string{"203.0.113.7"}, MaxCalls: 100},
				Agents:                    []AgentConfig{{Menu: &Menu{Default: Outcome{TransferType: "SYSTEM"}}}},
			},
		},
		Node:     Node{Heartbeat: Duration(5 * time.Second), TTL: Duration(15 * time.Second)},
		Shutdown: Shutdown{DrainTimeout: Duration(time.Hour)},
		Log:      Log{Level: "info", Format: "json"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load(Example()) =\n%+v\nwant\n%+v", got, want)
	}

	// The example shows the defaults of everything outside the lists.
	d := Default()
	gotSIP, dSIP := got.SIP, d.SIP
	gotSIP.Trunks, dSIP.Trunks = nil, nil
	if got.API != d.API || got.Store != d.Store || got.Pool.Quarantine != d.Pool.Quarantine ||
		got.Expiry != d.Expiry || !reflect.DeepEqual(gotSIP, dSIP) || got.Node != d.Node || got.Log != d.Log {
		t.Errorf("the example's scalars differ from Default()")
	}
	for _, tn := range got.Tenants[:1] {
		if tn.PhoneNumberTTL != d.Tenants[0].PhoneNumberTTL || tn.SIPTTL != d.Tenants[0].SIPTTL ||
			tn.DefaultReturnTransferType != d.Tenants[0].DefaultReturnTransferType || tn.RateLimit != d.Tenants[0].RateLimit ||
			tn.SIP.User != tn.ID || tn.SIP.MaxCalls != DefaultMaxCalls {
			t.Errorf("the example's first tenant does not show the tenant defaults: %+v", tn)
		}
		m := tn.Agents[0].Menu
		if m.DigitTimeout != Duration(DefaultDigitTimeout) || m.Collect[0].MaxDigits != DefaultMaxDigits ||
			m.Collect[0].Terminator != DefaultTerminator {
			t.Errorf("the example's first menu does not show the menu defaults: %+v", m)
		}
	}
}

// Every field, and every variable, is documented in the example: a field
// added to Config without its documentation fails here.
func TestExampleDocumentsEverything(t *testing.T) {
	ex := Example()
	var keys func(t reflect.Type) []string
	keys = func(t reflect.Type) []string {
		var out []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			key := yamlKey(f)
			if key == "" {
				continue
			}
			out = append(out, key)
			ft := f.Type
			for ft.Kind() == reflect.Slice || ft.Kind() == reflect.Map || ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				out = append(out, keys(ft)...)
			}
		}
		return out
	}
	for _, key := range keys(reflect.TypeOf(Config{})) {
		if !strings.Contains(ex, key+":") {
			t.Errorf("Example() does not show the field %s", key)
		}
	}
	for _, name := range EnvVars() {
		if !strings.Contains(ex, "Env: "+name+"\n") {
			t.Errorf("Example() does not name the variable %s", name)
		}
	}
}
