package web

import (
	"context"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"loadwatch/internal/store"
	"loadwatch/internal/tariff"
	"loadwatch/internal/telemetry"
)

// RangeQuerier runs PromQL queries (*store.Store implements it).
type RangeQuerier interface {
	Query(ctx context.Context, q string, t time.Time) (*store.Result, error)
	QueryRange(ctx context.Context, q string, start, end time.Time, step time.Duration) (*store.Result, error)
}

// scalarOf returns the first value of an instant query, if any.
func scalarOf(res *store.Result) (float64, bool) {
	if res == nil || len(res.Series) == 0 || len(res.Series[0].Points) == 0 {
		return 0, false
	}
	return res.Series[0].Points[0].V, true
}

// EnergyService answers GET /ui/api/devices/{id}/energy: energy used
// today, this week (from Monday) and this month, priced by a tariff, and
// split by the classified appliance.
type EnergyService struct {
	Q      RangeQuerier
	Tariff *tariff.Tariff // nil: energy only, cost 0
	Now    func() time.Time
}

// EnergyJSON is the answer of the energy endpoint.
type EnergyJSON struct {
	Device    string         `json:"device"`
	Currency  string         `json:"currency,omitempty"`
	PriceNow  float64        `json:"price_now"`
	Tariff    string         `json:"tariff,omitempty"`
	Periods   []PeriodEnergy `json:"periods"`
	Estimated string         `json:"note"`
}

// PeriodEnergy is one period's energy and cost.
type PeriodEnergy struct {
	Name    string        `json:"name"` // today, week, month
	From    time.Time     `json:"from"`
	KWh     float64       `json:"kwh"`
	Cost    float64       `json:"cost"`
	ByClass []ClassEnergy `json:"by_class"`
}

// ClassEnergy is the energy attributed to one class.
type ClassEnergy struct {
	Class string  `json:"class"`
	KWh   float64 `json:"kwh"`
	Cost  float64 `json:"cost"`
}

func (e *EnergyService) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *EnergyService) tariff() *tariff.Tariff {
	if e.Tariff != nil {
		return e.Tariff
	}
	return &tariff.Tariff{}
}

// Compute returns the energy of device for today, this week and this
// month (in the tariff's time zone) up to now.
func (e *EnergyService) Compute(ctx context.Context, device string) (EnergyJSON, error) {
	tr := e.tariff()
	loc := tr.Loc
	if loc == nil {
		loc = time.Local
	}
	now := e.now().In(loc)
	y, m, d := now.Date()
	today := time.Date(y, m, d, 0, 0, 0, 0, loc)
	week := today.AddDate(0, 0, -((int(today.Weekday()) + 6) % 7))
	month := time.Date(y, m, 1, 0, 0, 0, 0, loc)
	out := EnergyJSON{Device: device, Currency: tr.Currency, PriceNow: tr.PriceAt(now), Tariff: tr.String(),
		Estimated: "total from the energy ledger; the split by appliance integrates power over the classified intervals (an estimate)"}
	for _, p := range []struct {
		name string
		from time.Time
	}{{"today", today}, {"week", week}, {"month", month}} {
		pe, err := e.period(ctx, device, p.from, now, tr)
		if err != nil {
			return out, err
		}
		pe.Name = p.name
		out.Periods = append(out.Periods, pe)
	}
	return out, nil
}

func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// period prices the ledger's increase between from and now, step by step,
// and attributes power to the majority class of each step.
func (e *EnergyService) period(ctx context.Context, device string, from, now time.Time, tr *tariff.Tariff) (PeriodEnergy, error) {
	pe := PeriodEnergy{From: from.UTC(), ByClass: []ClassEnergy{}}
	span := now.Sub(from)
	if span <= 0 {
		return pe, nil
	}
	step := max(time.Minute, (span / 2000).Round(time.Second))
	// The steps end exactly at now and their windows (t-step, t] stay
	// inside the period: n*step <= span.
	n := max(1, int(span/step))
	if time.Duration(n)*step > span {
		step = max(time.Second, span.Round(time.Second))
		n = 1
	}
	first := now.Add(-time.Duration(n-1) * step)
	sel := "{" + store.LabelDevice + "=" + quote(device) + "}"
	// The ledger total only grows: the energy of the period is its rise
	// from the last value before the period (or, for a device first seen
	// inside it, its smallest value in the period), step by step so each
	// step is priced at its own rate.
	energy := store.MetricEnergy + sel
	prevV, ok := 0.0, false
	prevT := from
	if r, err := e.Q.Query(ctx, "last_over_time("+energy+"[35d])", from); err == nil {
		prevV, ok = scalarOf(r)
	} else {
		return pe, err
	}
	if !ok {
		// No value before the period: the rise before the first step is
		// priced within that step, not spread from the period's start.
		prevT = time.Time{}
		r, err := e.Q.Query(ctx, "min_over_time("+energy+"["+promDur(span+time.Second)+"])", now)
		if err != nil {
			return pe, err
		}
		if prevV, ok = scalarOf(r); !ok {
			return pe, nil // no energy data in the period
		}
	}
	res, err := e.Q.QueryRange(ctx, "last_over_time("+energy+"["+promDur(step)+"])", first, now, step)
	if err != nil {
		return pe, err
	}
	if len(res.Series) > 0 {
		for _, p := range res.Series[0].Points {
			t := time.UnixMilli(p.T)
			if prevT.IsZero() {
				prevT = t.Add(-step)
			}
			if dj := p.V - prevV; dj > 0 {
				wh := dj / 3600
				pe.KWh += wh / 1000
				pe.Cost += tr.Cost(prevT, t, wh)
			}
			prevV, prevT = max(prevV, p.V), t
		}
	}
	// Split by class: average power per step times the step, to the class
	// seen most often in that step; finer steps than the ledger's (at most
	// 10,000 per period, at least 10 s), so loads that change often are
	// less smeared across classes.
	step = max(10*time.Second, (span / 10000).Round(time.Second))
	n = max(1, int(span/step))
	if time.Duration(n)*step > span {
		step, n = max(time.Second, span.Round(time.Second)), 1
	}
	first = now.Add(-time.Duration(n-1) * step)
	pw, err := e.Q.QueryRange(ctx, "avg_over_time("+store.MetricPower+sel+"["+promDur(step)+"])", first, now, step)
	if err != nil {
		return pe, err
	}
	cl, err := e.Q.QueryRange(ctx, "count_over_time("+store.MetricClassConfidence+sel+"["+promDur(step)+"])", first, now, step)
	if err != nil {
		return pe, err
	}
	best := map[int64]struct {
		class string
		n     float64
	}{}
	for _, s := range cl.Series {
		class := ""
		for _, l := range s.Labels {
			if l.Name == store.LabelClass {
				class = l.Value
			}
		}
		for _, p := range s.Points {
			if b, ok := best[p.T]; !ok || p.V > b.n {
				best[p.T] = struct {
					class string
					n     float64
				}{class, p.V}
			}
		}
	}
	by := map[string]*ClassEnergy{}
	for _, s := range pw.Series {
		for _, p := range s.Points {
			if math.IsNaN(p.V) || p.V <= 0 {
				continue
			}
			c := "unclassified"
			if b, ok := best[p.T]; ok {
				c = b.class
			}
			t0 := time.UnixMilli(p.T).Add(-step)
			wh := p.V * step.Hours()
			ce := by[c]
			if ce == nil {
				ce = &ClassEnergy{Class: c}
				by[c] = ce
			}
			ce.KWh += wh / 1000
			ce.Cost += tr.Cost(t0, time.UnixMilli(p.T), wh)
		}
	}
	for _, ce := range by {
		ce.KWh, ce.Cost = round(ce.KWh, 6), round(ce.Cost, 6)
		pe.ByClass = append(pe.ByClass, *ce)
	}
	sort.Slice(pe.ByClass, func(i, j int) bool { return pe.ByClass[i].KWh > pe.ByClass[j].KWh })
	pe.KWh, pe.Cost = round(pe.KWh, 6), round(pe.Cost, 6)
	return pe, nil
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

func promDur(d time.Duration) string {
	return strconv.FormatInt(int64(max(d, time.Second)/time.Second), 10) + "s"
}

func (e *EnergyService) serve(w http.ResponseWriter, r *http.Request) {
	dev := r.PathValue("id")
	if err := telemetry.ValidateDeviceID(dev); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	out, err := e.Compute(r.Context(), dev)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "energy query: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, out)
}
