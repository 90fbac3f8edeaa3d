package telemetry

import (
	"os"
	"strings"
	"testing"
)

// TestStatusRelay: the optional relay member decodes to each of the four
// states and back to the same bytes; a status without it (every payload an
// older agent sends, and the last will) still decodes, to an empty Relay,
// and is re-encoded without the member.
func TestStatusRelay(t *testing.T) {
	for _, c := range []struct {
		payload string
		want    RelayState
	}{
		{`{"v":1,"state":"online","relay":"closed"}`, RelayClosed},
		{`{"v":1,"state":"online","relay":"open"}`, RelayOpen},
		{`{"v":1,"state":"online","relay":"tripped"}`, RelayTripped},
		{`{"v":1,"state":"online","relay":"latched"}`, RelayLatched},
		{`{"v":1,"state":"online","firmware":"v1","ts":"2026-03-01T12:00:00.123Z","relay":"open"}`, RelayOpen},
		{`{"v":1,"state":"online"}`, ""},
		{`{"v":1,"state":"offline","firmware":"v1"}`, ""},
		// The member's place in the object does not matter.
		{`{"relay":"latched","v":1,"state":"online"}`, RelayLatched},
	} {
		s, err := DecodeStatus([]byte(c.payload), t0, Limits{})
		if err != nil {
			t.Errorf("%s: %v", c.payload, err)
			continue
		}
		if s.Relay != c.want {
			t.Errorf("%s: relay %q, want %q", c.payload, s.Relay, c.want)
		}
		enc := string(s.AppendJSON(nil))
		if has := strings.Contains(enc, `"relay"`); has != (c.want != "") {
			t.Errorf("%s: re-encoded as %s", c.payload, enc)
		}
		if c.want != "" && !strings.Contains(enc, `"relay":"`+string(c.want)+`"`) {
			t.Errorf("%s: re-encoded as %s", c.payload, enc)
		}
		s2, err := DecodeStatus([]byte(enc), t0, Limits{})
		if err != nil || s2.Relay != s.Relay || s2.State != s.State {
			t.Errorf("%s: round trip %+v %v", enc, s2, err)
		}
	}
	// The golden files of the statuses without a relay are unchanged.
	for _, name := range []string{"status_online.json", "status_link.json"} {
		p, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if s, err := DecodeStatus(p, t0, Limits{}); err != nil || s.Relay != "" {
			t.Errorf("%s: relay %q, %v", name, s.Relay, err)
		}
	}
	p, err := os.ReadFile("testdata/status_relay.json")
	if err != nil {
		t.Fatal(err)
	}
	if s, err := DecodeStatus(p, t0, Limits{}); err != nil || s.Relay != RelayTripped || s.Link[1].Requests != 20 {
		t.Errorf("status_relay.json: %+v %v", s, err)
	}
}

// TestStatusRelayRefused: a relay member that is not one of the four state
// strings is refused, naming the member.
func TestStatusRelayRefused(t *testing.T) {
	for _, c := range []struct {
		relay  string
		reason Reason
	}{
		{`""`, ReasonBadValue},
		{`"Closed"`, ReasonBadValue},
		{`"on"`, ReasonBadValue},
		{`"closed "`, ReasonBadValue},
		{`"unknown"`, ReasonBadValue},
		{`"` + strings.Repeat("x", 300) + `"`, ReasonBadValue},
		{`null`, ReasonBadType},
		{`true`, ReasonBadType},
		{`1`, ReasonBadType},
		{`["closed"]`, ReasonBadType},
		{`{"state":"closed"}`, ReasonBadType},
	} {
		payload := `{"v":1,"state":"online","relay":` + c.relay + `}`
		_, err := DecodeStatus([]byte(payload), t0, Limits{})
		var e *Error
		if ReasonOf(err) != c.reason || !asError(err, &e) || e.Field != "relay" {
			t.Errorf("%s: err %v, want %s on relay", c.relay, err, c.reason)
		}
	}
	// An escaped spelling of a valid state is the same JSON string.
	s, err := DecodeStatus([]byte(`{"v":1,"state":"online","relay":"clos\u0065d"}`), t0, Limits{})
	if err != nil || s.Relay != RelayClosed {
		t.Errorf("escaped closed: %+v %v", s, err)
	}
}

func TestKnownRelayState(t *testing.T) {
	for _, r := range []RelayState{RelayClosed, RelayOpen, RelayTripped, RelayLatched} {
		if !KnownRelayState(r) {
			t.Errorf("%q not known", r)
		}
	}
	for _, r := range []RelayState{"", "on", "off", "CLOSED"} {
		if KnownRelayState(r) {
			t.Errorf("%q known", r)
		}
	}
}

func BenchmarkDecodeStatusRelay(b *testing.B) {
	p := benchPayload(b, "status_relay.json")
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeStatus(p, t0, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
