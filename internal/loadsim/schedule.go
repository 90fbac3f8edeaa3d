package loadsim

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"loadwatch/internal/power"
)

// Kind says what an Event does.
type Kind uint8

// The kinds of schedule events.
const (
	KindSwitch    Kind = iota // an appliance switches on or off
	KindSurge                 // the grid voltage rises by Volts for For
	KindSag                   // the grid voltage falls by Volts for For
	KindFrequency             // the grid frequency moves by Hertz for For
)

// Event is one entry of a Schedule.
type Event struct {
	At        time.Duration // offset from the circuit's Start (within the period when repeating)
	Kind      Kind
	Appliance string        // KindSwitch
	On        bool          // KindSwitch
	Volts     power.Volts   // KindSurge, KindSag: size of the step, > 0
	Hertz     power.Hertz   // KindFrequency: signed offset from nominal
	For       time.Duration // grid events: how long it lasts
}

// GridEvent is a grid disturbance injected at run time with Circuit.Inject.
// Kind is KindSurge, KindSag or KindFrequency.
type GridEvent struct {
	Kind  Kind
	Volts power.Volts
	Hertz power.Hertz
	For   time.Duration
}

// Schedule is a plan of appliance switches and grid events, relative to the
// circuit's Start. With Repeat > 0 the plan repeats with that period (every
// event must lie before Repeat). Appliances keep their last state across a
// period boundary.
type Schedule struct {
	Events []Event
	Repeat time.Duration
}

// ErrSchedule is wrapped by every schedule parse and validation error.
var ErrSchedule = errors.New("bad schedule")

// ScheduleError locates a bad schedule entry.
type ScheduleError struct {
	Entry int    // 1-based index of the ';'-separated entry
	Text  string // the entry
	Err   error
}

func (e *ScheduleError) Error() string {
	return fmt.Sprintf("schedule entry %d %q: %v", e.Entry, e.Text, e.Err)
}

func (e *ScheduleError) Unwrap() []error { return []error{ErrSchedule, e.Err} }

// Limits of what a schedule may ask for.
const (
	maxOffset    = 30 * 24 * time.Hour
	maxEventFor  = 24 * time.Hour
	maxStepVolts = 100
	maxStepHertz = 5
)

// ParseSchedule reads the compact schedule syntax used by CLI flags:
//
//	0s:laptop; 30s:+solder; 45s:surge+8V/5s; 90s:-laptop; repeat=10m
//
// Entries are separated by ';' or newlines; blanks are ignored. Each entry
// is OFFSET:ACTION with OFFSET a Go duration (0 may be written alone):
//
//	+NAME              switch appliance NAME on
//	-NAME              switch it off
//	A+B+...            exactly these appliances on, all others off
//	nothing            all appliances off
//	surge+8V/5s        grid voltage up by 8 V for 5 s ('+' optional)
//	sag-12V/2s         grid voltage down by 12 V for 2 s ('-' optional)
//	freq+0.2Hz/10s     grid frequency off nominal by +0.2 Hz for 10 s (sign required)
//
// and `repeat=DURATION` repeats the whole plan with that period. Appliance
// names are laptop, solder, printer, 3d_printer.
func ParseSchedule(s string) (Schedule, error) {
	var sc Schedule
	entries := strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == '\n' })
	n := 0
	for _, raw := range entries {
		e := strings.TrimSpace(raw)
		if e == "" {
			continue
		}
		n++
		bad := func(err error) error { return &ScheduleError{Entry: n, Text: e, Err: err} }
		if v, ok := strings.CutPrefix(e, "repeat="); ok {
			d, err := parseDur(v)
			if err != nil {
				return Schedule{}, bad(err)
			}
			if d <= 0 {
				return Schedule{}, bad(errors.New("repeat period must be positive"))
			}
			if sc.Repeat != 0 {
				return Schedule{}, bad(errors.New("repeat given twice"))
			}
			sc.Repeat = d
			continue
		}
		off, act, ok := strings.Cut(e, ":")
		if !ok {
			return Schedule{}, bad(errors.New("want OFFSET:ACTION, e.g. 30s:+laptop"))
		}
		at, err := parseDur(strings.TrimSpace(off))
		if err != nil {
			return Schedule{}, bad(err)
		}
		evs, err := parseAction(strings.TrimSpace(act))
		if err != nil {
			return Schedule{}, bad(err)
		}
		for _, ev := range evs {
			ev.At = at
			sc.Events = append(sc.Events, ev)
		}
	}
	slices.SortStableFunc(sc.Events, func(a, b Event) int { return int(a.At - b.At) })
	if err := sc.Validate(); err != nil {
		return Schedule{}, err
	}
	return sc, nil
}

func parseDur(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("offset or period %q: %w", s, err)
	}
	return d, nil
}

func parseAction(a string) ([]Event, error) {
	switch {
	case a == "":
		return nil, errors.New("missing action after ':'")
	case strings.HasPrefix(a, "surge"):
		return gridAction(KindSurge, a[len("surge"):])
	case strings.HasPrefix(a, "sag"):
		return gridAction(KindSag, a[len("sag"):])
	case strings.HasPrefix(a, "freq"):
		return gridAction(KindFrequency, a[len("freq"):])
	case a[0] == '+' || a[0] == '-':
		name := a[1:]
		if !IsAppliance(name) {
			return nil, unknownAppliance(name)
		}
		return []Event{{Kind: KindSwitch, Appliance: name, On: a[0] == '+'}}, nil
	case a == Nothing:
		var evs []Event
		for _, n := range Appliances() {
			evs = append(evs, Event{Kind: KindSwitch, Appliance: n})
		}
		return evs, nil
	}
	on := map[string]bool{}
	for _, name := range strings.Split(a, "+") {
		if !IsAppliance(name) {
			return nil, unknownAppliance(name)
		}
		on[name] = true
	}
	var evs []Event
	for _, n := range Appliances() {
		evs = append(evs, Event{Kind: KindSwitch, Appliance: n, On: on[n]})
	}
	return evs, nil
}

func unknownAppliance(name string) error {
	return fmt.Errorf("unknown appliance %q (want one of %s)", name, strings.Join(Appliances(), ", "))
}

// IsAppliance reports whether name is one of the appliances a Circuit
// models.
func IsAppliance(name string) bool { return slices.Contains(Appliances(), name) }

// gridAction parses "+8V/5s", "8V/5s", "-0.2Hz/10s".
func gridAction(k Kind, s string) ([]Event, error) {
	amount, d, ok := strings.Cut(s, "/")
	if !ok {
		return nil, errors.New("grid event needs a duration, e.g. surge+8V/5s")
	}
	For, err := parseDur(d)
	if err != nil {
		return nil, err
	}
	unit := "V"
	if k == KindFrequency {
		unit = "Hz"
	}
	num, ok := strings.CutSuffix(amount, unit)
	if !ok {
		return nil, fmt.Errorf("amount %q must end in %s", amount, unit)
	}
	sign := 0.0
	if strings.HasPrefix(num, "+") {
		sign = 1
	} else if strings.HasPrefix(num, "-") {
		sign = -1
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || strings.TrimLeft(strings.TrimLeft(num, "+-"), "0123456789.") != "" {
		return nil, fmt.Errorf("amount %q is not a plain number", amount)
	}
	ev := Event{Kind: k, For: For}
	switch k {
	case KindSurge, KindSag:
		want := 1.0
		if k == KindSag {
			want = -1
		}
		if sign != 0 && sign != want {
			return nil, errors.New("a surge goes up (+) and a sag goes down (-)")
		}
		ev.Volts = power.Volts(v * want)
		if sign == 0 {
			ev.Volts = power.Volts(v)
		}
	case KindFrequency:
		if sign == 0 {
			return nil, errors.New("a frequency step needs a sign, e.g. freq+0.2Hz/10s")
		}
		ev.Hertz = power.Hertz(v)
	}
	return []Event{ev}, nil
}

// Validate checks a Schedule built in code the same way ParseSchedule
// checks text.
func (s Schedule) Validate() error {
	if s.Repeat < 0 || s.Repeat > maxOffset {
		return &ScheduleError{Entry: 0, Text: "repeat=" + s.Repeat.String(), Err: fmt.Errorf("repeat period must be in (0, %v]", maxOffset)}
	}
	for i, e := range s.Events {
		bad := func(msg string) error {
			return &ScheduleError{Entry: i + 1, Text: e.String(), Err: errors.New(msg)}
		}
		if e.At < 0 || e.At > maxOffset {
			return bad(fmt.Sprintf("offset must be in [0, %v]", maxOffset))
		}
		if i > 0 && e.At < s.Events[i-1].At {
			return bad("events must be in time order")
		}
		if s.Repeat > 0 && e.At >= s.Repeat {
			return bad("offset must lie inside the repeat period")
		}
		switch e.Kind {
		case KindSwitch:
			if !IsAppliance(e.Appliance) {
				return bad(unknownAppliance(e.Appliance).Error())
			}
			continue
		case KindSurge, KindSag:
			if !(e.Volts > 0 && e.Volts <= maxStepVolts) {
				return bad(fmt.Sprintf("voltage step must be in (0, %d] V", maxStepVolts))
			}
		case KindFrequency:
			if !(e.Hertz != 0 && math.Abs(float64(e.Hertz)) <= maxStepHertz) {
				return bad(fmt.Sprintf("frequency step must be non-zero and within +-%d Hz", maxStepHertz))
			}
		default:
			return bad("unknown event kind")
		}
		if e.For <= 0 || e.For > maxEventFor {
			return bad(fmt.Sprintf("duration must be in (0, %v]", maxEventFor))
		}
	}
	return nil
}

// String gives the event in schedule syntax.
func (e Event) String() string {
	at := e.At.String()
	switch e.Kind {
	case KindSwitch:
		if e.On {
			return at + ":+" + e.Appliance
		}
		return at + ":-" + e.Appliance
	case KindSurge:
		return at + ":surge+" + num(float64(e.Volts)) + "V/" + e.For.String()
	case KindSag:
		return at + ":sag-" + num(float64(e.Volts)) + "V/" + e.For.String()
	case KindFrequency:
		sign := "+"
		if e.Hertz < 0 {
			sign = ""
		}
		return at + ":freq" + sign + num(float64(e.Hertz)) + "Hz/" + e.For.String()
	}
	return at + ":?"
}

func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// String gives the schedule in the syntax ParseSchedule reads, one event
// per entry (so a set action such as laptop+solder comes back as switches).
func (s Schedule) String() string {
	parts := make([]string, 0, len(s.Events)+1)
	for _, e := range s.Events {
		parts = append(parts, e.String())
	}
	if s.Repeat > 0 {
		parts = append(parts, "repeat="+s.Repeat.String())
	}
	return strings.Join(parts, "; ")
}
