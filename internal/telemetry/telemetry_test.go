package telemetry

import (
	"bytes"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"loadwatch/internal/power"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 123_000_000, time.UTC)

func fullReading(seq uint64, at time.Time) Telemetry {
	return Telemetry{
		Seq:         seq,
		ClockSynced: true,
		Reading: power.Reading{
			Time: at, Voltage: 229.8, Current: 0.435, Power: 87.4, Energy: 12345,
			Frequency: 50, PF: 0.87, Alarm: false, Has: power.AllMeterFields,
		},
		EnergyTotal: 10_012_345, HasEnergyTotal: true,
		State:    StateActive,
		Features: &Features{V: 2, Values: map[string]float64{"p_mean_30s": 86.1, "dp": -0.5, "v_sag": 1.25}},
	}
}

func goldenCases() map[string][]byte {
	single := Message{Epoch: "b7f3c2a1", Readings: []Telemetry{fullReading(42, t0)}}
	partial := Message{Epoch: "b7f3c2a1", Readings: []Telemetry{{
		Seq: 43, Reading: power.Reading{Time: t0.Add(5 * time.Second), Voltage: 231, Power: 0, Has: power.FieldVoltage | power.FieldPower},
		State: StateHeartbeat,
	}}}
	batch := Message{Epoch: "b7f3c2a1", Batch: true}
	for i := range 3 {
		batch.Readings = append(batch.Readings, fullReading(uint64(100+i), t0.Add(time.Duration(i)*5*time.Second)))
	}
	batch.Readings[1].Features = nil
	batch.Readings[2].State = StateHeartbeat
	ev := Event{Kind: EventGridSurge, Time: t0, ClockSynced: true,
		Before: power.Reading{Voltage: 229.5, Power: 60.2, Has: power.FieldVoltage | power.FieldPower},
		After:  power.Reading{Voltage: 236.1, Power: 61.9, Has: power.FieldVoltage | power.FieldPower},
		Detail: "V +6.6 V with P flat"}
	st := Status{State: StatusOnline, Firmware: "v0.3.1", Time: t0}
	stLink := Status{State: StatusOnline, Firmware: "v0.3.1", Time: t0, Link: map[uint8]LinkCounters{
		3: {Requests: 20, Replies: 20, LastLatency: 109 * time.Millisecond},
		1: {Requests: 1210, Replies: 1203, CRCErrors: 3, Timeouts: 2, Exceptions: 1, ShortFrames: 1, Resyncs: 2, Retries: 6,
			LastLatency: 112500 * time.Microsecond},
	}}
	stRelay := Status{State: StatusOnline, Firmware: "v0.3.1", Time: t0, Relay: RelayTripped, Link: map[uint8]LinkCounters{
		1: {Requests: 20, Replies: 20, LastLatency: 109 * time.Millisecond},
	}}
	cmd := Command{ID: "c-17", Kind: CmdSetIntervals, Args: []byte(`{ "wake": "10s", "heartbeat": 30 }`)}
	ack := CommandAck{ID: "c-17", OK: false, Error: "relay latched: reset first", State: "latched"}
	return map[string][]byte{
		"telemetry_single.json":  single.Marshal(),
		"telemetry_partial.json": partial.Marshal(),
		"telemetry_batch.json":   batch.Marshal(),
		"event_grid_surge.json":  ev.AppendJSON(nil),
		"status_online.json":     st.AppendJSON(nil),
		"status_link.json":       stLink.AppendJSON(nil),
		"status_relay.json":      stRelay.AppendJSON(nil),
		"cmd_set_intervals.json": cmd.AppendJSON(nil),
		"cmd_ack.json":           ack.AppendJSON(nil),
	}
}

func TestGolden(t *testing.T) {
	for name, got := range goldenCases() {
		path := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -update)", err)
		}
		if !bytes.Equal(bytes.TrimSpace(want), got) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
}

func TestTelemetryRoundTrip(t *testing.T) {
	now := t0.Add(time.Minute)
	for _, name := range []string{"telemetry_single.json", "telemetry_partial.json", "telemetry_batch.json"} {
		payload, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		m, err := DecodeTelemetry(payload, now, Limits{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := m.Marshal(); !bytes.Equal(got, bytes.TrimSpace(payload)) {
			t.Errorf("%s: re-encoded\n%s\nwant\n%s", name, got, payload)
		}
		if err := ValidateTelemetry(&m, now, Limits{}); err != nil {
			t.Errorf("%s: ValidateTelemetry: %v", name, err)
		}
	}
	// Struct equality for the single form, including the Has mask.
	want := Message{V: 1, Epoch: "e1", Readings: []Telemetry{fullReading(7, t0)}}
	got, err := DecodeTelemetry(want.Marshal(), now, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !got.Readings[0].Reading.Time.Equal(t0) {
		t.Fatalf("time %v", got.Readings[0].Reading.Time)
	}
	got.Readings[0].Reading.Time = t0
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
	}
}

func TestAbsentFieldsStayAbsent(t *testing.T) {
	m := Message{Epoch: "e", Readings: []Telemetry{{Seq: 1, State: StateHeartbeat,
		Reading: power.Reading{Time: t0, Power: 0, Has: power.FieldPower}}}}
	s := string(m.Marshal())
	for _, f := range []string{"voltage", "current", "energy", "frequency", "pf", "alarm", "features", "null"} {
		if strings.Contains(s, f) {
			t.Errorf("%q in %s", f, s)
		}
	}
	if !strings.Contains(s, `"power":0`) {
		t.Errorf("measured zero power missing: %s", s)
	}
	d, err := DecodeTelemetry([]byte(s), t0, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Readings[0].Reading.Has != power.FieldPower {
		t.Errorf("Has = %b", d.Readings[0].Reading.Has)
	}
}

func TestDecodeTelemetryRejects(t *testing.T) {
	now := t0
	base := `"v":1,"epoch":"e1","seq":1,"ts":"2026-03-01T12:00:00.000Z","state":"active"`
	obj := func(extra string) string { return "{" + base + extra + "}" }
	cases := []struct {
		name, payload string
		reason        Reason
		field         string
	}{
		{"not json", `{"v":1,`, ReasonMalformedJSON, ""},
		{"array", `[1,2]`, ReasonMalformedJSON, ""},
		{"bare NaN", obj(`,"power":NaN`), ReasonNaNOrInf, ""},
		{"no version", `{"epoch":"e1","seq":1,"ts":"2026-03-01T12:00:00Z","state":"active"}`, ReasonMissingField, "v"},
		{"version 2", strings.Replace(obj(""), `"v":1`, `"v":2`, 1), ReasonUnsupportedVersion, "v"},
		{"version string", strings.Replace(obj(""), `"v":1`, `"v":"1"`, 1), ReasonUnsupportedVersion, "v"},
		{"no epoch", `{"v":1,"seq":1,"ts":"2026-03-01T12:00:00Z","state":"active"}`, ReasonMissingField, "epoch"},
		{"epoch slash", strings.Replace(obj(""), `"e1"`, `"e/1"`, 1), ReasonBadValue, "epoch"},
		{"no seq", `{"v":1,"epoch":"e","ts":"2026-03-01T12:00:00Z","state":"active"}`, ReasonMissingField, "seq"},
		{"negative seq", strings.Replace(obj(""), `"seq":1`, `"seq":-1`, 1), ReasonOutOfRange, "seq"},
		{"fractional seq", strings.Replace(obj(""), `"seq":1`, `"seq":1.5`, 1), ReasonBadType, "seq"},
		{"no ts", `{"v":1,"epoch":"e","seq":1,"state":"active"}`, ReasonMissingField, "ts"},
		{"bad ts", strings.Replace(obj(""), `2026-03-01T12:00:00.000Z`, `yesterday`, 1), ReasonBadTimestamp, "ts"},
		{"ts without zone", strings.Replace(obj(""), `2026-03-01T12:00:00.000Z`, `2026-03-01T12:00:00`, 1), ReasonBadTimestamp, "ts"},
		{"future ts", strings.Replace(obj(""), `2026-03-01T12:00:00.000Z`, `2026-03-01T12:06:00.000Z`, 1), ReasonFutureTimestamp, "ts"},
		{"no state", `{"v":1,"epoch":"e","seq":1,"ts":"2026-03-01T12:00:00Z"}`, ReasonMissingField, "state"},
		{"bad state", strings.Replace(obj(""), `"active"`, `"asleep"`, 1), ReasonBadValue, "state"},
		{"null power", obj(`,"power":null`), ReasonBadType, "power"},
		{"string power", obj(`,"power":"5"`), ReasonBadType, "power"},
		{"negative power", obj(`,"power":-3`), ReasonNegativePower, "power"},
		{"huge power", obj(`,"power":30000`), ReasonOutOfRange, "power"},
		{"inf power", obj(`,"power":1e400`), ReasonNaNOrInf, "power"},
		{"voltage high", obj(`,"voltage":400`), ReasonOutOfRange, "voltage"},
		{"voltage negative", obj(`,"voltage":-1`), ReasonOutOfRange, "voltage"},
		{"current high", obj(`,"current":120`), ReasonOutOfRange, "current"},
		{"energy high", obj(`,"energy":10000001`), ReasonOutOfRange, "energy"},
		{"total negative", obj(`,"energy_total":-1`), ReasonOutOfRange, "energy_total"},
		{"frequency low", obj(`,"frequency":30`), ReasonOutOfRange, "frequency"},
		{"pf high", obj(`,"pf":2`), ReasonOutOfRange, "pf"},
		{"alarm number", obj(`,"alarm":1`), ReasonBadType, "alarm"},
		{"clock string", obj(`,"clock_synced":"yes"`), ReasonBadType, "clock_synced"},
		{"features no v", obj(`,"features":{"a":1}`), ReasonMissingField, "features.v"},
		{"features string", obj(`,"features":{"v":1,"a":"x"}`), ReasonBadType, "features"},
		{"features inf", obj(`,"features":{"v":1,"a":1e999}`), ReasonNaNOrInf, "features"},
		{"features array", obj(`,"features":[1]`), ReasonBadType, "features"},
		{"batch empty", `{"v":1,"epoch":"e","readings":[]}`, ReasonMissingField, "readings"},
		{"batch with top seq", `{"v":1,"epoch":"e","seq":1,"readings":[{"seq":1,"ts":"2026-03-01T12:00:00Z","state":"active"}]}`, ReasonMalformedJSON, ""},
		{"batch item bad", `{"v":1,"epoch":"e","readings":[{"seq":1,"ts":"2026-03-01T12:00:00Z","state":"active"},{"seq":2,"ts":"2026-03-01T12:00:05Z","state":"active","power":-1}]}`, ReasonNegativePower, "power"},
		{"batch item with epoch", `{"v":1,"epoch":"e","readings":[{"epoch":"x","seq":1,"ts":"2026-03-01T12:00:00Z","state":"active"}]}`, ReasonMalformedJSON, "readings"},
		{"too large", obj(`,"pad":"` + strings.Repeat("x", 200<<10) + `"`), ReasonTooLarge, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeTelemetry([]byte(c.payload), now, Limits{})
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want *Error %s", err, c.reason)
			}
			if e.Reason != c.reason || e.Field != c.field {
				t.Errorf("got %s/%q (%v), want %s/%q", e.Reason, e.Field, err, c.reason, c.field)
			}
			if !errors.Is(err, &Error{Reason: c.reason, Index: -1}) || ReasonOf(err) != c.reason {
				t.Errorf("errors.Is/ReasonOf do not match %s", c.reason)
			}
		})
	}
}

func TestBatchLimit(t *testing.T) {
	m := Message{Epoch: "e", Batch: true}
	for i := range 5 {
		m.Readings = append(m.Readings, fullReading(uint64(i), t0))
	}
	if _, err := DecodeTelemetry(m.Marshal(), t0, Limits{MaxBatch: 4}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v", err)
	}
	got, err := DecodeTelemetry(m.Marshal(), t0, Limits{MaxBatch: 5})
	if err != nil || len(got.Readings) != 5 || !got.Batch || got.Readings[4].Seq != 4 {
		t.Fatalf("got %+v, %v", got, err)
	}
	// A batch of one stays a batch.
	one := Message{Epoch: "e", Batch: true, Readings: m.Readings[:1]}
	if !bytes.Contains(one.Marshal(), []byte(`"readings":[{"seq":0,`)) {
		t.Errorf("batch of one: %s", one.Marshal())
	}
}

func TestStringEscaping(t *testing.T) {
	ev := Event{Kind: EventRelayTrip, Time: t0, Detail: "a\"b\\c\n\x01\xffé"}
	got, err := DecodeEvent(ev.AppendJSON(nil), t0, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Detail != "a\"b\\c\n\x01\uFFFDé" {
		t.Errorf("detail %q", got.Detail)
	}
}

func TestEventDecode(t *testing.T) {
	payload, err := os.ReadFile("testdata/event_grid_surge.json")
	if err != nil {
		t.Fatal(err)
	}
	e, err := DecodeEvent(payload, t0, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if e.Kind != EventGridSurge || e.Before.Voltage != 229.5 || e.After.Power != 61.9 ||
		e.After.Has != power.FieldVoltage|power.FieldPower || !e.Time.Equal(t0) {
		t.Errorf("%+v", e)
	}
	for _, c := range []struct {
		payload string
		reason  Reason
	}{
		{`{"v":1,"kind":"meteor","ts":"2026-03-01T12:00:00Z"}`, ReasonBadValue},
		{`{"v":1,"ts":"2026-03-01T12:00:00Z"}`, ReasonMissingField},
		{`{"v":1,"kind":"load_on"}`, ReasonMissingField},
		{`{"v":1,"kind":"load_on","ts":"2026-03-01T12:00:00Z","after":{"power":-4}}`, ReasonNegativePower},
		{`{"v":1,"kind":"load_on","ts":"2026-03-01T12:00:00Z","before":{"voltage":"x"}}`, ReasonBadType},
		{`{"v":1,"kind":"load_on","ts":"2027-03-01T12:00:00Z"}`, ReasonFutureTimestamp},
	} {
		if _, err := DecodeEvent([]byte(c.payload), t0, Limits{}); ReasonOf(err) != c.reason {
			t.Errorf("%s: err %v, want %s", c.payload, err, c.reason)
		}
	}
}

func TestStatusCommandAck(t *testing.T) {
	st, err := DecodeStatus([]byte(`{"v":1,"state":"offline"}`), t0, Limits{})
	if err != nil || st.State != StatusOffline || !st.Time.IsZero() {
		t.Fatalf("%+v %v", st, err)
	}
	if _, err := DecodeStatus([]byte(`{"v":1,"state":"sleepy"}`), t0, Limits{}); ReasonOf(err) != ReasonBadValue {
		t.Errorf("err %v", err)
	}
	payload, _ := os.ReadFile("testdata/cmd_set_intervals.json")
	c, err := DecodeCommand(payload, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var a SetIntervalsArgs
	if err := DecodeArgs(&c, &a); err != nil || a.Wake == nil || *a.Wake != Duration(10*time.Second) || *a.Heartbeat != 30 {
		t.Fatalf("%+v %v", a, err)
	}
	for _, c := range []struct {
		payload string
		reason  Reason
	}{
		{`{"v":1,"id":"a","kind":"explode"}`, ReasonBadValue},
		{`{"v":1,"id":"a/b","kind":"relay_on"}`, ReasonBadValue},
		{`{"v":1,"kind":"relay_on"}`, ReasonMissingField},
		{`{"v":1,"id":"a","kind":"set_alarm","args":{"watts":-1}}`, ReasonOutOfRange},
		{`{"v":1,"id":"a","kind":"set_alarm","args":{"wats":5}}`, ReasonBadType},
		{`{"v":1,"id":"a","kind":"set_alarm","args":[5]}`, ReasonBadType},
		{`{"v":1,"id":"a","kind":"set_intervals","args":{"wake":"1ms"}}`, ReasonOutOfRange},
		{`{"v":1,"id":"a","kind":"set_intervals","args":{"wake":"soon"}}`, ReasonBadType},
		{`{"v":1,"id":"a","kind":"set_thresholds","args":{"max_power_w":0}}`, ReasonOutOfRange},
	} {
		if _, err := DecodeCommand([]byte(c.payload), Limits{}); ReasonOf(err) != c.reason {
			t.Errorf("%s: err %v, want %s", c.payload, err, c.reason)
		}
	}
	ok, err := DecodeCommand([]byte(`{"v":1,"id":"x","kind":"set_thresholds","args":{"max_power_w":2000,"hold":"3s"}}`), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var th SetThresholdsArgs
	if err := DecodeArgs(&ok, &th); err != nil || *th.MaxPower != 2000 || *th.Hold != Duration(3*time.Second) || th.MaxCurrent != nil {
		t.Errorf("%+v %v", th, err)
	}
	payload, _ = os.ReadFile("testdata/cmd_ack.json")
	ack, err := DecodeCommandAck(payload, Limits{})
	if err != nil || ack.ID != "c-17" || ack.OK || ack.State != "latched" || ack.Error == "" {
		t.Errorf("%+v %v", ack, err)
	}
}

func TestTasmota(t *testing.T) {
	payload, err := os.ReadFile("testdata/tasmota_sensor.json")
	if err != nil {
		t.Fatal(err)
	}
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		berlin = time.FixedZone("CET", 3600)
	}
	r, err := DecodeTasmota(payload, berlin, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := power.Reading{
		Time:    time.Date(2026, 3, 1, 13, 0, 5, 0, berlin),
		Voltage: 231, Current: 0.217, Power: 45, Energy: 12345, PF: 0.9, Frequency: 50,
		Has: power.FieldVoltage | power.FieldCurrent | power.FieldPower | power.FieldEnergy | power.FieldPF | power.FieldFrequency,
	}
	if !r.Time.Equal(want.Time) {
		t.Errorf("time %v want %v", r.Time, want.Time)
	}
	r.Time = want.Time
	if r != want {
		t.Errorf("got %+v\nwant %+v", r, want)
	}
	// Without frequency, with an explicit offset.
	r, err = DecodeTasmota([]byte(`{"Time":"2026-03-01T10:00:00+01:00","ENERGY":{"Total":0.5,"Power":3,"Voltage":230,"Current":0.02,"Factor":0.6}}`), nil, time.Time{}, Limits{})
	if err != nil || r.Is(power.FieldFrequency) || !r.Time.Equal(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)) || r.Energy != 500 {
		t.Errorf("%+v %v", r, err)
	}
	for _, c := range []struct {
		payload string
		reason  Reason
	}{
		{`{"Time":"2026-03-01T10:00:00","DS18B20":{"Temperature":20}}`, ReasonMissingField},
		{`{"ENERGY":{"Power":3}}`, ReasonMissingField},
		{`{"Time":"2026-03-01T10:00:00","ENERGY":{"Power":[3,4,5]}}`, ReasonBadType},
		{`{"Time":"2026-03-01T10:00:00","ENERGY":{"Power":-3}}`, ReasonNegativePower},
		{`{"Time":"noon","ENERGY":{"Power":3}}`, ReasonBadTimestamp},
		{`{"Time":"2026-03-01T10:00:00","ENERGY":{}}`, ReasonMissingField},
	} {
		if _, err := DecodeTasmota([]byte(c.payload), nil, time.Time{}, Limits{}); ReasonOf(err) != c.reason {
			t.Errorf("%s: err %v, want %s", c.payload, err, c.reason)
		}
	}
}

func TestValidateLocal(t *testing.T) {
	ok := Message{Epoch: "e", Readings: []Telemetry{fullReading(1, t0)}}
	if err := ValidateTelemetry(&ok, t0, Limits{}); err != nil {
		t.Fatal(err)
	}
	nan := fullReading(1, t0)
	nan.Reading.Power = power.Watts(math.NaN())
	noState := fullReading(2, t0)
	noState.State = ""
	future := fullReading(3, t0.Add(time.Hour))
	badFeature := fullReading(4, t0)
	badFeature.Features = &Features{V: 1, Values: map[string]float64{"x": math.Inf(1)}}
	for _, c := range []struct {
		m      Message
		reason Reason
	}{
		{Message{V: 2, Epoch: "e", Readings: []Telemetry{fullReading(1, t0)}}, ReasonUnsupportedVersion},
		{Message{Epoch: "", Readings: []Telemetry{fullReading(1, t0)}}, ReasonMissingField},
		{Message{Epoch: "e"}, ReasonMissingField},
		{Message{Epoch: "e", Readings: []Telemetry{nan}}, ReasonNaNOrInf},
		{Message{Epoch: "e", Readings: []Telemetry{noState}}, ReasonMissingField},
		{Message{Epoch: "e", Readings: []Telemetry{future}}, ReasonFutureTimestamp},
		{Message{Epoch: "e", Readings: []Telemetry{badFeature}}, ReasonNaNOrInf},
	} {
		if err := ValidateTelemetry(&c.m, t0, Limits{}); ReasonOf(err) != c.reason {
			t.Errorf("%+v: %v, want %s", c.m, err, c.reason)
		}
	}
	// A zero now skips the future check (re-reading the agent's own outbox).
	m := Message{Epoch: "e", Readings: []Telemetry{future}}
	if err := ValidateTelemetry(&m, time.Time{}, Limits{}); err != nil {
		t.Error(err)
	}
}
