package loadsim

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseSchedule(t *testing.T) {
	sw := func(at time.Duration, name string, on bool) Event {
		return Event{At: at, Kind: KindSwitch, Appliance: name, On: on}
	}
	all := func(at time.Duration, on ...string) []Event {
		var evs []Event
		for _, n := range Appliances() {
			o := false
			for _, x := range on {
				o = o || x == n
			}
			evs = append(evs, sw(at, n, o))
		}
		return evs
	}
	cat := func(parts ...[]Event) []Event {
		var out []Event
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	tests := []struct {
		in     string
		want   Schedule
		errHas string
	}{
		{in: "", want: Schedule{}},
		{in: " ; \n ;", want: Schedule{}},
		{in: "0:+laptop", want: Schedule{Events: []Event{sw(0, Laptop, true)}}},
		{in: "0s:laptop; 30s:+solder; 45s:surge+8V/5s; 90s:-laptop", want: Schedule{Events: cat(
			all(0, Laptop),
			[]Event{sw(30*time.Second, Solder, true)},
			[]Event{{At: 45 * time.Second, Kind: KindSurge, Volts: 8, For: 5 * time.Second}},
			[]Event{sw(90*time.Second, Laptop, false)},
		)}},
		{in: "1m:nothing", want: Schedule{Events: all(time.Minute)}},
		{in: "10s:printer+3d_printer", want: Schedule{Events: all(10*time.Second, Printer, Printer3D)}},
		{in: "5s:sag-12.5V/2s;6s:sag3V/1s", want: Schedule{Events: []Event{
			{At: 5 * time.Second, Kind: KindSag, Volts: 12.5, For: 2 * time.Second},
			{At: 6 * time.Second, Kind: KindSag, Volts: 3, For: time.Second},
		}}},
		{in: "1s:surge9V/1m", want: Schedule{Events: []Event{{At: time.Second, Kind: KindSurge, Volts: 9, For: time.Minute}}}},
		{in: "0s:freq-0.2Hz/10s; 20s:freq+0.1Hz/1s", want: Schedule{Events: []Event{
			{Kind: KindFrequency, Hertz: -0.2, For: 10 * time.Second},
			{At: 20 * time.Second, Kind: KindFrequency, Hertz: 0.1, For: time.Second},
		}}},
		{in: "30s:-solder\n10s:+solder; repeat=1m", want: Schedule{Repeat: time.Minute, Events: []Event{
			sw(10*time.Second, Solder, true), sw(30*time.Second, Solder, false),
		}}},
		{in: "0s:+kettle", errHas: `unknown appliance "kettle"`},
		{in: "0s:laptop+fan", errHas: `unknown appliance "fan"`},
		{in: "laptop", errHas: "want OFFSET:ACTION"},
		{in: "5x:+laptop", errHas: "offset or period"},
		{in: "-5s:+laptop", errHas: "offset must be in"},
		{in: "5s:", errHas: "missing action"},
		{in: "5s:surge+8V", errHas: "needs a duration"},
		{in: "5s:surge-8V/1s", errHas: "surge goes up"},
		{in: "5s:sag+8V/1s", errHas: "sag goes down"},
		{in: "5s:surge+8/1s", errHas: "must end in V"},
		{in: "5s:surge+1e3V/1s", errHas: "plain number"},
		{in: "5s:surge+200V/1s", errHas: "voltage step"},
		{in: "5s:surge+0V/1s", errHas: "voltage step"},
		{in: "5s:surge+NaNV/1s", errHas: "plain number"},
		{in: "5s:surge+InfV/1s", errHas: "plain number"},
		{in: "5s:surge+V/1s", errHas: "plain number"},
		{in: "5s:surge+8V/0s", errHas: "duration must be"},
		{in: "5s:freq0.2Hz/1s", errHas: "needs a sign"},
		{in: "5s:freq+9Hz/1s", errHas: "frequency step"},
		{in: "1m:+laptop; repeat=30s", errHas: "inside the repeat period"},
		{in: "repeat=0s", errHas: "must be positive"},
		{in: "repeat=1m; repeat=2m", errHas: "twice"},
		{in: "0s:+laptop; 1s:+bogus", errHas: "entry 2"},
	}
	for _, tc := range tests {
		got, err := ParseSchedule(tc.in)
		if tc.errHas != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("ParseSchedule(%q) error = %v, want one containing %q", tc.in, err, tc.errHas)
			}
			if err != nil && !errors.Is(err, ErrSchedule) {
				t.Errorf("ParseSchedule(%q) error %v does not wrap ErrSchedule", tc.in, err)
			}
			var se *ScheduleError
			if err != nil && !errors.As(err, &se) {
				t.Errorf("ParseSchedule(%q) error %T is not a *ScheduleError", tc.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseSchedule(%q): %v", tc.in, err)
			continue
		}
		if got.String() != tc.want.String() || len(got.Events) != len(tc.want.Events) {
			t.Errorf("ParseSchedule(%q) =\n %s\nwant\n %s", tc.in, got, tc.want)
		}
		for i := range got.Events {
			if i < len(tc.want.Events) && got.Events[i] != tc.want.Events[i] {
				t.Errorf("ParseSchedule(%q) event %d = %+v, want %+v", tc.in, i, got.Events[i], tc.want.Events[i])
			}
		}
	}
}

func TestScheduleRoundTrip(t *testing.T) {
	s, err := ParseSchedule(ReferenceScheduleText)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseSchedule(s.String())
	if err != nil {
		t.Fatalf("reparse %q: %v", s.String(), err)
	}
	if back.String() != s.String() {
		t.Fatalf("round trip changed the schedule:\n%s\n%s", s, back)
	}
}

func TestReferenceSchedule(t *testing.T) {
	s := ReferenceSchedule()
	if s.Repeat != time.Hour {
		t.Errorf("repeat = %v, want 1h", s.Repeat)
	}
	kinds := map[Kind]bool{}
	on := map[string]bool{}
	for _, e := range s.Events {
		kinds[e.Kind] = true
		if e.Kind == KindSwitch && e.On {
			on[e.Appliance] = true
		}
		if e.Kind == KindSurge && e.Volts <= 5 {
			t.Errorf("reference surge of %v is not above 5 V", e.Volts)
		}
	}
	for _, k := range []Kind{KindSwitch, KindSurge, KindSag, KindFrequency} {
		if !kinds[k] {
			t.Errorf("reference schedule has no event of kind %d", k)
		}
	}
	for _, n := range Appliances() {
		if !on[n] {
			t.Errorf("reference schedule never switches %s on", n)
		}
	}
	// The hour must hold every steady state, combinations and a surge
	// with the load flat; check the labels the circuit gives over it.
	c := NewCircuit(Config{Seed: 1, Schedule: s})
	seen := map[string]bool{}
	for d := time.Duration(0); d < time.Hour; d += time.Second {
		seen[c.Label(c.Start().Add(d))] = true
	}
	for _, l := range []string{Nothing, Laptop, "laptop+solder", "laptop+printer", "3d_printer+laptop+printer", "3d_printer+laptop", "3d_printer"} {
		if !seen[l] {
			t.Errorf("reference hour never shows %q (saw %v)", l, seen)
		}
	}
}

func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{ReferenceScheduleText, "0s:laptop; 30s:+solder; 45s:surge+8V/5s; 90s:-laptop",
		"5s:sag-3V/1s", "0:freq+0.1Hz/1s; repeat=1m", "0s:nothing", "1s:+3d_printer", "0s:surge+0.00001V/1ns", "x:y:z", "repeat=-1s", ";;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSchedule(in)
		if err != nil {
			if !errors.Is(err, ErrSchedule) {
				t.Fatalf("error %v does not wrap ErrSchedule", err)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("parsed schedule does not validate: %v", err)
		}
		back, err := ParseSchedule(s.String())
		if err != nil {
			t.Fatalf("String() %q does not parse: %v", s.String(), err)
		}
		if back.String() != s.String() || len(back.Events) != len(s.Events) {
			t.Fatalf("round trip: %q -> %q", s.String(), back.String())
		}
		for i := range s.Events {
			if back.Events[i] != s.Events[i] {
				t.Fatalf("round trip event %d: %+v -> %+v", i, s.Events[i], back.Events[i])
			}
		}
	})
}

func BenchmarkParseSchedule(b *testing.B) {
	for b.Loop() {
		if _, err := ParseSchedule(ReferenceScheduleText); err != nil {
			b.Fatal(err)
		}
	}
}
