package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"loadwatch/internal/power"
	"loadwatch/internal/readingscsv"
	"loadwatch/internal/store"
	"loadwatch/internal/telemetry"
)

// Store is what Import needs of the store (*store.Store implements it).
type Store interface {
	Append(ctx context.Context, batch []store.Sample) error
	Querier
}

// ImportConfidence is the confidence stored with an imported label: a
// label in a readings CSV is a statement, not a guess.
const ImportConfidence = 1.0

// ImportStats counts what Import did.
type ImportStats struct {
	Rows    int // rows read
	Samples int // samples handed to the store
	// Refused counts samples the store refused: a different value
	// already stored at the same time (store.ErrConflict) or older than
	// its out-of-order window (store.ErrTooOld). First is the first cause.
	Refused int
	First   error
	// LabelsKept counts labels not stored because the store already
	// has a class for that device and time: import never overrides a
	// stored classification (and re-importing an export changes nothing).
	LabelsKept int
	Devices    map[string]int // rows per device
}

// importBatch is how many rows go into one store append.
const importBatch = 512

// Import reads a readings CSV and stores its rows as the series ingest
// writes: voltage, current, power, frequency and power factor as given;
// energy as the device's energy total (Wh to joules); a label as the
// class series with confidence ImportConfidence, unless the store already
// has a class for that device and time. Importing the same file again,
// or an export into the store it came from, stores nothing new (the store
// keeps one sample per series and time): Import is idempotent. A bad row stops the import with
// its line (rows before it are stored). Device ids must be valid
// telemetry device ids.
func Import(ctx context.Context, app Store, r io.Reader) (ImportStats, error) {
	st := ImportStats{Devices: map[string]int{}}
	rd, err := readingscsv.NewReader(r)
	if err != nil {
		return st, fmt.Errorf("backup: import: %w", err)
	}
	var batch []store.Sample
	var labels []store.Sample
	rows := 0
	flush := func() error {
		if len(labels) > 0 {
			kept, err := newLabels(ctx, app, labels)
			if err != nil {
				return fmt.Errorf("backup: import: %w", err)
			}
			st.LabelsKept += len(labels) - len(kept)
			batch = append(batch, kept...)
			labels = labels[:0]
		}
		if len(batch) == 0 {
			return nil
		}
		err := app.Append(ctx, batch)
		st.Samples += len(batch)
		batch, rows = batch[:0], 0
		var ae *store.AppendError
		switch {
		case errors.As(err, &ae):
			st.Refused += ae.Refused
			if st.First == nil {
				st.First = ae.First
			}
		case err != nil:
			return fmt.Errorf("backup: import: %w", err)
		}
		return nil
	}
	for {
		row, err := rd.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if ferr := flush(); ferr != nil {
				return st, ferr
			}
			return st, fmt.Errorf("backup: import: %w", err)
		}
		if err := telemetry.ValidateDeviceID(row.Device); err != nil {
			if ferr := flush(); ferr != nil {
				return st, ferr
			}
			return st, fmt.Errorf("backup: import: line %d: %w", row.Line, err)
		}
		st.Rows++
		st.Devices[row.Device]++
		ls := store.DeviceLabels(row.Device)
		batch = store.ReadingSamples(batch, ls, row.Reading)
		t := store.Millis(row.Reading.Time)
		if row.Reading.Is(power.FieldEnergy) {
			batch = append(batch, store.EnergySample(ls, t, row.Reading.Energy))
		}
		if row.Label != "" {
			labels = append(labels, store.ClassSample(row.Device, row.Label, t, ImportConfidence))
		}
		if rows++; rows >= importBatch {
			if err := flush(); err != nil {
				return st, err
			}
		}
	}
	return st, flush()
}

// newLabels returns the class samples of ls whose device has no class
// stored at that time yet.
func newLabels(ctx context.Context, q Querier, ls []store.Sample) ([]store.Sample, error) {
	type span struct{ lo, hi int64 }
	spans := map[string]span{}
	for _, l := range ls {
		dev := deviceOf(l)
		sp, ok := spans[dev]
		if !ok {
			sp = span{l.T, l.T}
		}
		spans[dev] = span{min(sp.lo, l.T), max(sp.hi, l.T)}
	}
	have := map[string]map[int64]bool{}
	for dev, sp := range spans {
		qs := fmt.Sprintf("%s{%s=%q}[%dms] @ %s", store.MetricClassConfidence, store.LabelDevice, dev, sp.hi-sp.lo+1, formatMillis(sp.hi))
		res, err := q.Query(ctx, qs, time.UnixMilli(sp.hi))
		if err != nil {
			return nil, err
		}
		ts := map[int64]bool{}
		for _, s := range res.Series {
			for _, p := range s.Points {
				ts[p.T] = true
			}
		}
		have[dev] = ts
	}
	out := make([]store.Sample, 0, len(ls))
	for _, l := range ls {
		if !have[deviceOf(l)][l.T] {
			out = append(out, l)
		}
	}
	return out, nil
}

func deviceOf(s store.Sample) string {
	for _, l := range s.Labels {
		if l.Name == store.LabelDevice {
			return l.Value
		}
	}
	return ""
}

// ImportWindow is the out-of-order window `loadwatch import` opens the
// store with, so that old readings (up to about ten years behind the
// store's newest sample) are accepted. The server's own window is 24 h.
const ImportWindow = 10 * 365 * 24 * time.Hour
