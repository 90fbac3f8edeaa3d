// Package backup moves loadwatch's data in and out of a data directory:
// readings exported to and imported from the readings CSV
// (internal/readingscsv), and consistent backups of the store and the
// registry that restore into an empty data directory. See docs/BACKUP.md.
package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"loadwatch/internal/power"
	"loadwatch/internal/readingscsv"
	"loadwatch/internal/store"
)

// Querier runs an instant PromQL query: the open store (*store.Store) or a
// running server's query API (HTTPQuerier).
type Querier interface {
	Query(ctx context.Context, q string, t time.Time) (*store.Result, error)
}

// ExportOptions selects what Export writes.
type ExportOptions struct {
	Device   string    // required
	From, To time.Time // inclusive; required, From <= To
	// Chunk is the time span of one query [6 h]: it bounds the samples
	// held in memory at once.
	Chunk time.Duration
}

// ExportStats counts what Export wrote.
type ExportStats struct {
	Rows     int // readings written
	Labelled int // of those, rows with a label (a stored class)
	Skipped  int // timestamps with no power sample (the CSV requires power)
}

// Stored series and their readings CSV fields.
var exportMetrics = []string{
	store.MetricVoltage, store.MetricCurrent, store.MetricPower, store.MetricEnergy,
	store.MetricFrequency, store.MetricPowerFactor, store.MetricClassConfidence,
}

// ErrBadRange is returned for a missing or reversed time range.
var ErrBadRange = errors.New("backup: bad time range")

// Export writes the readings of one device between From and To to w as
// the readings CSV: voltage, current, power, frequency and power factor
// from their series; energy is the stored energy total (the agent's
// monotonic ledger, in Wh), not the meter's raw counter; label is the
// class stored with the reading, if any. Timestamps without a power
// sample are skipped (counted), because the format requires power.
func Export(ctx context.Context, q Querier, w io.Writer, o ExportOptions) (ExportStats, error) {
	var st ExportStats
	if o.Device == "" {
		return st, errors.New("backup: export: no device")
	}
	if o.From.IsZero() || o.To.IsZero() || o.To.Before(o.From) {
		return st, fmt.Errorf("%w: from %v to %v", ErrBadRange, o.From, o.To)
	}
	if o.Chunk <= 0 {
		o.Chunk = 6 * time.Hour
	}
	o.Chunk = o.Chunk.Truncate(time.Millisecond)
	if o.Chunk < time.Millisecond {
		o.Chunk = time.Millisecond
	}
	sel := fmt.Sprintf(`{__name__=~%q,%s=%q}`, strings.Join(exportMetrics, "|"), store.LabelDevice, o.Device)
	cw := readingscsv.NewWriter(w)
	from, to := store.Millis(o.From), store.Millis(o.To)
	for lo := from; lo <= to; {
		hi := min(lo+o.Chunk.Milliseconds()-1, to)
		// A range selector covers (end-range, end]: this one is [lo, hi].
		qs := fmt.Sprintf("%s[%dms] @ %s", sel, hi-lo+1, formatMillis(hi))
		res, err := q.Query(ctx, qs, time.UnixMilli(hi))
		if err != nil {
			return st, fmt.Errorf("backup: export: %w", err)
		}
		if err := writeChunk(cw, o.Device, res, &st); err != nil {
			return st, err
		}
		if hi == to {
			break
		}
		lo = hi + 1
	}
	if err := cw.Flush(); err != nil {
		return st, fmt.Errorf("backup: export: %w", err)
	}
	return st, nil
}

// formatMillis writes a millisecond timestamp as PromQL seconds.
func formatMillis(ms int64) string {
	return strconv.FormatFloat(float64(ms)/1000, 'f', 3, 64)
}

// row is one timestamp's samples.
type row struct {
	r          power.Reading
	class      string
	confidence float64
}

func writeChunk(cw *readingscsv.Writer, device string, res *store.Result, st *ExportStats) error {
	if res.Type != store.TypeMatrix {
		return fmt.Errorf("backup: export: the query answered a %s, want a matrix", res.Type)
	}
	rows := map[int64]*row{}
	get := func(t int64) *row {
		r := rows[t]
		if r == nil {
			r = &row{r: power.Reading{Time: time.UnixMilli(t).UTC()}}
			rows[t] = r
		}
		return r
	}
	for _, s := range res.Series {
		var name, class string
		for _, l := range s.Labels {
			switch l.Name {
			case "__name__":
				name = l.Value
			case store.LabelClass:
				class = l.Value
			}
		}
		for _, p := range s.Points {
			if math.IsNaN(p.V) || math.IsInf(p.V, 0) {
				continue
			}
			r := get(p.T)
			switch name {
			case store.MetricVoltage:
				r.r.Voltage, r.r.Has = power.Volts(p.V), r.r.Has|power.FieldVoltage
			case store.MetricCurrent:
				r.r.Current, r.r.Has = power.Amperes(p.V), r.r.Has|power.FieldCurrent
			case store.MetricPower:
				r.r.Power, r.r.Has = power.Watts(p.V), r.r.Has|power.FieldPower
			case store.MetricEnergy:
				r.r.Energy, r.r.Has = whFromJoules(p.V), r.r.Has|power.FieldEnergy
			case store.MetricFrequency:
				r.r.Frequency, r.r.Has = power.Hertz(p.V), r.r.Has|power.FieldFrequency
			case store.MetricPowerFactor:
				r.r.PF, r.r.Has = power.PowerFactor(p.V), r.r.Has|power.FieldPF
			case store.MetricClassConfidence:
				// Two classes at one instant cannot come from ingest; keep
				// the more confident one (then the first by name).
				if class != "" && (r.class == "" || p.V > r.confidence || (p.V == r.confidence && class < r.class)) {
					r.class, r.confidence = class, p.V
				}
			}
		}
	}
	ts := make([]int64, 0, len(rows))
	for t := range rows {
		ts = append(ts, t)
	}
	slices.Sort(ts)
	for _, t := range ts {
		r := rows[t]
		if !r.r.Is(power.FieldPower) {
			st.Skipped++
			continue
		}
		if err := cw.Write(device, r.r, r.class); err != nil {
			return fmt.Errorf("backup: export: %w", err)
		}
		st.Rows++
		if r.class != "" {
			st.Labelled++
		}
	}
	return nil
}

// whFromJoules converts a stored energy total to Wh, choosing among the
// float64 values next to j/3600 one that converts back to exactly j (as
// WattHours.Joules does on import) when there is one, so that importing an
// export into the store it came from stores nothing new.
func whFromJoules(j float64) power.WattHours {
	w := j / 3600
	if w*3600 == j {
		return power.WattHours(w)
	}
	up, down := w, w
	for range 4 {
		up, down = math.Nextafter(up, math.Inf(1)), math.Nextafter(down, math.Inf(-1))
		if up*3600 == j {
			return power.WattHours(up)
		}
		if down*3600 == j && down >= 0 {
			return power.WattHours(down)
		}
	}
	return power.WattHours(w)
}
