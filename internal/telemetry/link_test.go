package telemetry

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestStatusLinkRoundTrip(t *testing.T) {
	payload, err := os.ReadFile("testdata/status_link.json")
	if err != nil {
		t.Fatal(err)
	}
	s, err := DecodeStatus(payload, t0, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint8]LinkCounters{
		1: {Requests: 1210, Replies: 1203, CRCErrors: 3, Timeouts: 2, Exceptions: 1, ShortFrames: 1, Resyncs: 2, Retries: 6, LastLatency: 112500 * time.Microsecond},
		3: {Requests: 20, Replies: 20, LastLatency: 109 * time.Millisecond},
	}
	if !reflect.DeepEqual(s.Link, want) {
		t.Errorf("link %+v, want %+v", s.Link, want)
	}
	if got := string(s.AppendJSON(nil)); got != strings.TrimSpace(string(payload)) {
		t.Errorf("re-encoded %s", got)
	}
	// Without counters the member is left out, and decodes to nil.
	s.Link = nil
	if b := s.AppendJSON(nil); strings.Contains(string(b), "link") {
		t.Errorf("empty link written: %s", b)
	}
	s2, err := DecodeStatus([]byte(`{"v":1,"state":"online"}`), t0, Limits{})
	if err != nil || s2.Link != nil {
		t.Errorf("no link: %+v %v", s2.Link, err)
	}
	// A missing counter is 0.
	s3, err := DecodeStatus([]byte(`{"v":1,"state":"online","link":{"7":{"requests":4,"timeouts":4}}}`), t0, Limits{})
	if err != nil || s3.Link[7] != (LinkCounters{Requests: 4, Timeouts: 4}) {
		t.Errorf("partial counters: %+v %v", s3.Link, err)
	}
}

func TestStatusLinkRefused(t *testing.T) {
	for _, c := range []struct {
		link   string
		reason Reason
		field  string
	}{
		{`[]`, ReasonBadType, "link"},
		{`null`, ReasonBadType, "link"},
		{`{"0":{}}`, ReasonBadValue, "link"},
		{`{"248":{}}`, ReasonBadValue, "link"},
		{`{"01":{}}`, ReasonBadValue, "link"},
		{`{"x":{}}`, ReasonBadValue, "link"},
		{`{"1":5}`, ReasonBadType, "link.1"},
		{`{"1":{"requests":-1}}`, ReasonOutOfRange, "link.1.requests"},
		{`{"1":{"requests":1.5}}`, ReasonBadType, "link.1.requests"},
		{`{"1":{"requests":"3"}}`, ReasonBadType, "link.1.requests"},
		{`{"1":{"requests":9007199254740993}}`, ReasonOutOfRange, "link.1.requests"},
		{`{"1":{"requests":99999999999999999999}}`, ReasonOutOfRange, "link.1.requests"},
		{`{"1":{"requests":2,"crc_errors":3}}`, ReasonOutOfRange, "link.1.crc_errors"},
		{`{"1":{"requests":2,"timeouts":-1}}`, ReasonOutOfRange, "link.1.timeouts"},
		{`{"1":{"last_latency_ms":-0.5}}`, ReasonOutOfRange, "link.1.last_latency_ms"},
		{`{"1":{"last_latency_ms":60001}}`, ReasonOutOfRange, "link.1.last_latency_ms"},
		{`{"1":{"last_latency_ms":1e999}}`, ReasonNaNOrInf, "link.1.last_latency_ms"},
		{`{"1":{"last_latency_ms":true}}`, ReasonBadType, "link.1.last_latency_ms"},
	} {
		payload := `{"v":1,"state":"online","link":` + c.link + `}`
		_, err := DecodeStatus([]byte(payload), t0, Limits{})
		var e *Error
		if ReasonOf(err) != c.reason || !asError(err, &e) || e.Field != c.field {
			t.Errorf("%s: err %v, want %s on %s", c.link, err, c.reason, c.field)
		}
	}
}

func asError(err error, e **Error) bool {
	x, ok := err.(*Error)
	*e = x
	return ok
}

func BenchmarkDecodeStatusLink(b *testing.B) {
	p := benchPayload(b, "status_link.json")
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeStatus(p, t0, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
