// Package tariff prices energy with time-of-day rates: a default price
// per kWh and rules such as "weekdays 22:00-06:00 cost 0.18". It is pure
// (standard library only).
//
// The text form, used by flags and config files, is
//
//	DEFAULT [CURRENCY] [; [DAYS] HH:MM-HH:MM PRICE]...
//
// for example "0.30 EUR; 22:00-06:00 0.18; sat,sun 00:00-24:00 0.20".
// DAYS is a comma-separated list of mon..sun or a range such as mon-fri
// (none: every day). A rule whose end is before its start wraps past
// midnight; the part after midnight belongs to the next day, so
// "fri 22:00-06:00" covers Friday 22:00 to Saturday 06:00. The first rule
// that matches wins; prices are per kWh.
package tariff

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ErrSyntax wraps every parse error.
var ErrSyntax = errors.New("tariff syntax")

// Rule is one time-of-day price.
type Rule struct {
	Days     [7]bool       // indexed by time.Weekday; all false: every day
	From, To time.Duration // since local midnight, 0..24h; To < From wraps
	Price    float64       // per kWh
}

// Tariff is a price schedule. The zero value prices everything at 0.
type Tariff struct {
	Default  float64 // per kWh
	Currency string  // display only, e.g. "EUR"
	Rules    []Rule
	Loc      *time.Location // the clock the rules follow; nil: time.Local
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// MaxRules bounds the rules one tariff may have.
const MaxRules = 64

// Parse reads the text form (see the package comment).
func Parse(s string) (*Tariff, error) {
	parts := strings.Split(s, ";")
	head := strings.Fields(parts[0])
	if len(head) == 0 || len(head) > 2 {
		return nil, fmt.Errorf("%w: want \"PRICE [CURRENCY]\" first, got %q", ErrSyntax, strings.TrimSpace(parts[0]))
	}
	def, err := parsePrice(head[0])
	if err != nil {
		return nil, err
	}
	t := &Tariff{Default: def}
	if len(head) == 2 {
		if len(head[1]) > 8 {
			return nil, fmt.Errorf("%w: currency %q longer than 8 characters", ErrSyntax, head[1])
		}
		t.Currency = head[1]
	}
	if len(parts)-1 > MaxRules {
		return nil, fmt.Errorf("%w: more than %d rules", ErrSyntax, MaxRules)
	}
	for _, p := range parts[1:] {
		r, err := parseRule(strings.Fields(p))
		if err != nil {
			return nil, fmt.Errorf("rule %q: %w", strings.TrimSpace(p), err)
		}
		t.Rules = append(t.Rules, r)
	}
	return t, nil
}

func parsePrice(s string) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > 1e6 {
		return 0, fmt.Errorf("%w: price %q: want a number from 0 to 1e6", ErrSyntax, s)
	}
	return v, nil
}

func parseRule(f []string) (Rule, error) {
	var r Rule
	if len(f) == 3 {
		if err := parseDays(f[0], &r.Days); err != nil {
			return r, err
		}
		f = f[1:]
	}
	if len(f) != 2 {
		return r, fmt.Errorf("%w: want \"[DAYS] HH:MM-HH:MM PRICE\"", ErrSyntax)
	}
	from, to, ok := strings.Cut(f[0], "-")
	if !ok {
		return r, fmt.Errorf("%w: span %q: want HH:MM-HH:MM", ErrSyntax, f[0])
	}
	var err error
	if r.From, err = parseClock(from); err != nil {
		return r, err
	}
	if r.To, err = parseClock(to); err != nil {
		return r, err
	}
	if r.From == r.To {
		return r, fmt.Errorf("%w: empty span %q", ErrSyntax, f[0])
	}
	r.Price, err = parsePrice(f[1])
	return r, err
}

func parseDays(s string, days *[7]bool) error {
	for _, item := range strings.Split(strings.ToLower(s), ",") {
		a, b, isRange := strings.Cut(item, "-")
		da, ok1 := dayNames[a]
		db, ok2 := da, true
		if isRange {
			db, ok2 = dayNames[b]
		}
		if !ok1 || !ok2 {
			return fmt.Errorf("%w: days %q: want mon..sun, lists or ranges such as mon-fri", ErrSyntax, s)
		}
		for d := da; ; d = (d + 1) % 7 {
			days[d] = true
			if d == db {
				break
			}
		}
	}
	return nil
}

func parseClock(s string) (time.Duration, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || len(m) != 2 || hh < 0 || mm < 0 || mm > 59 || hh > 24 || hh == 24 && mm != 0 {
		return 0, fmt.Errorf("%w: time %q: want HH:MM from 00:00 to 24:00", ErrSyntax, s)
	}
	return time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute, nil
}

func (t *Tariff) loc() *time.Location {
	if t.Loc != nil {
		return t.Loc
	}
	return time.Local
}

// sinceMidnight returns the weekday and the time of day of ts in loc.
func sinceMidnight(ts time.Time) (time.Weekday, time.Duration) {
	y, mo, d := ts.Date()
	mid := time.Date(y, mo, d, 0, 0, 0, 0, ts.Location())
	return ts.Weekday(), ts.Sub(mid)
}

func (r *Rule) day(d time.Weekday) bool {
	return r.Days == [7]bool{} || r.Days[d]
}

func (r *Rule) matches(d time.Weekday, tod time.Duration) bool {
	if r.From < r.To {
		return r.day(d) && tod >= r.From && tod < r.To
	}
	// wraps: the evening part belongs to d, the morning part to the day before
	return r.day(d) && tod >= r.From || r.day((d+6)%7) && tod < r.To
}

// PriceAt returns the price per kWh in force at ts.
func (t *Tariff) PriceAt(ts time.Time) float64 {
	d, tod := sinceMidnight(ts.In(t.loc()))
	for i := range t.Rules {
		if t.Rules[i].matches(d, tod) {
			return t.Rules[i].Price
		}
	}
	return t.Default
}

// Cost prices wh watt-hours used evenly between from and to, splitting
// the span at every minute so a rate change inside it is honoured (rules
// start and end on whole minutes).
func (t *Tariff) Cost(from, to time.Time, wh float64) float64 {
	if wh == 0 || math.IsNaN(wh) {
		return 0
	}
	span := to.Sub(from)
	if span <= 0 {
		return wh / 1000 * t.PriceAt(from)
	}
	if len(t.Rules) == 0 {
		return wh / 1000 * t.Default
	}
	cost := 0.0
	for a := from; a.Before(to); {
		b := a.Truncate(time.Minute).Add(time.Minute)
		if b.After(to) {
			b = to
		}
		cost += wh * (float64(b.Sub(a)) / float64(span)) / 1000 * t.PriceAt(a)
		a = b
	}
	return cost
}

// String writes the text form.
func (t *Tariff) String() string {
	var b strings.Builder
	b.WriteString(strconv.FormatFloat(t.Default, 'f', -1, 64))
	if t.Currency != "" {
		b.WriteString(" " + t.Currency)
	}
	names := []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}
	for _, r := range t.Rules {
		b.WriteString("; ")
		if r.Days != [7]bool{} {
			var ds []string
			for i, on := range r.Days {
				if on {
					ds = append(ds, names[i])
				}
			}
			b.WriteString(strings.Join(ds, ",") + " ")
		}
		fmt.Fprintf(&b, "%02d:%02d-%02d:%02d %s", int(r.From.Hours()), int(r.From.Minutes())%60,
			int(r.To.Hours()), int(r.To.Minutes())%60, strconv.FormatFloat(r.Price, 'f', -1, 64))
	}
	return b.String()
}
