package tariff

import (
	"errors"
	"math"
	"testing"
	"time"
)

var berlin = mustLoc("Europe/Berlin")

func mustLoc(name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		return time.FixedZone(name, 3600)
	}
	return l
}

func TestParseAndPrice(t *testing.T) {
	tr, err := Parse("0.30 EUR; 22:00-06:00 0.18; sat,sun 00:00-24:00 0.20; mon-fri 12:00-13:00 0.5")
	if err != nil {
		t.Fatal(err)
	}
	tr.Loc = berlin
	at := func(s string) time.Time {
		ts, err := time.ParseInLocation("2006-01-02 15:04", s, berlin)
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	for _, c := range []struct {
		when string
		want float64
	}{
		{"2026-11-25 10:00", 0.30}, // Wednesday day
		{"2026-11-25 22:00", 0.18}, // night starts
		{"2026-11-26 05:59", 0.18}, // night, after midnight
		{"2026-11-26 06:00", 0.30},
		{"2026-11-28 10:00", 0.20}, // Saturday
		{"2026-11-28 23:00", 0.18}, // night rule comes first
		{"2026-11-27 12:30", 0.50}, // Friday lunch
		{"2026-11-29 12:30", 0.20}, // Sunday lunch: weekend rule
	} {
		if got := tr.PriceAt(at(c.when)); got != c.want {
			t.Errorf("%s: price %v, want %v", c.when, got, c.want)
		}
	}
	// One kWh spread over 21:00-23:00: half at 0.30, half at 0.18.
	got := tr.Cost(at("2026-11-25 21:00"), at("2026-11-25 23:00"), 1000)
	if math.Abs(got-0.24) > 1e-9 {
		t.Errorf("cost over a rate change %v, want 0.24", got)
	}
	if back, err := Parse(tr.String()); err != nil || back.String() != tr.String() {
		t.Errorf("round trip %q -> %v %v", tr.String(), back, err)
	}
}

func TestWrapBelongsToStartDay(t *testing.T) {
	tr, err := Parse("1; fri 22:00-06:00 0.1")
	if err != nil {
		t.Fatal(err)
	}
	tr.Loc = time.UTC
	sat3 := time.Date(2026, 11, 28, 3, 0, 0, 0, time.UTC) // Saturday 03:00
	fri3 := time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC) // Friday 03:00
	if tr.PriceAt(sat3) != 0.1 || tr.PriceAt(fri3) != 1 {
		t.Errorf("saturday 03:00 %v (want 0.1), friday 03:00 %v (want 1)", tr.PriceAt(sat3), tr.PriceAt(fri3))
	}
}

func TestParseErrors(t *testing.T) {
	for _, s := range []string{"", "abc", "-1", "NaN", "0.3 EUR extra", "0.3; 22:00 0.1", "0.3; 25:00-01:00 0.1",
		"0.3; 10:00-10:00 0.1", "0.3; xyz 10:00-11:00 0.1", "0.3; 10:0-11:00 0.1", "0.3; 10:00-11:00 -2", "0.3 VERYLONGCUR",
		"0.3; 24:30-01:00 1"} {
		if _, err := Parse(s); !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) = %v, want ErrSyntax", s, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"0.30 EUR; 22:00-06:00 0.18", "1; sat,sun 00:00-24:00 2", "0;mon-fri 1:00-02:00 3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tr, err := Parse(s)
		if err != nil {
			return
		}
		back, err := Parse(tr.String())
		if err != nil {
			t.Fatalf("String() %q of a parsed tariff does not parse: %v", tr.String(), err)
		}
		if back.String() != tr.String() {
			t.Fatalf("round trip %q != %q", back.String(), tr.String())
		}
		p := tr.PriceAt(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
		if p < 0 || math.IsNaN(p) {
			t.Fatalf("price %v", p)
		}
	})
}

func BenchmarkCostHour(b *testing.B) {
	tr, _ := Parse("0.30 EUR; 22:00-06:00 0.18; sat,sun 00:00-24:00 0.20")
	tr.Loc = time.UTC
	from := time.Date(2026, 11, 25, 21, 30, 0, 0, time.UTC)
	for b.Loop() {
		tr.Cost(from, from.Add(time.Hour), 1234)
	}
}
