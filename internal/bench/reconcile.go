package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"loadwatch/internal/store"
)

// Gap is one acknowledged reading that the server did not store.
type Gap struct {
	Device string    `json:"device"`
	Epoch  string    `json:"epoch"`
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"ts"`
}

// Reconciliation compares what the server acknowledged with what it
// stored.
type Reconciliation struct {
	Acked  uint64 `json:"readings_acknowledged"`
	Stored uint64 `json:"readings_stored"` // acknowledged readings found in the store
	Lost   uint64 `json:"readings_lost"`   // acknowledged but not stored
	// StoredUnacked counts stored readings the fleet never saw
	// acknowledged (a PUBACK lost in a crash, the reading still held).
	StoredUnacked uint64 `json:"readings_stored_unacknowledged"`
	Gaps          []Gap  `json:"gaps,omitempty"` // the first MaxGaps lost readings
}

// MaxGaps bounds the gaps listed in a Reconciliation.
const MaxGaps = 100

// DeviceAcks is what one device saw acknowledged.
type DeviceAcks struct {
	Device string
	Epochs []string
	Acked  []acked
}

// reconcile compares each device's acknowledged readings with the sample
// timestamps stored for it (milliseconds; a device's readings have
// distinct timestamps).
func reconcile(devs []DeviceAcks, stored map[string][]int64) Reconciliation {
	var r Reconciliation
	for _, d := range devs {
		have := make(map[int64]bool, len(stored[d.Device]))
		for _, t := range stored[d.Device] {
			have[t] = true
		}
		seen := make(map[int64]bool, len(d.Acked))
		for _, a := range d.Acked {
			if seen[a.ms] {
				continue
			}
			seen[a.ms] = true
			r.Acked++
			if have[a.ms] {
				r.Stored++
				continue
			}
			r.Lost++
			if len(r.Gaps) < MaxGaps {
				r.Gaps = append(r.Gaps, Gap{Device: d.Device, Epoch: d.Epochs[a.epoch], Seq: a.seq, Time: time.UnixMilli(a.ms).UTC()})
			}
		}
		for t := range have {
			if !seen[t] {
				r.StoredUnacked++
			}
		}
	}
	return r
}

// acks snapshots what every device saw acknowledged, and the span of
// timestamps of every reading taken.
func (f *Fleet) acks() (devs []DeviceAcks, minMS, maxMS int64, unsure map[string]bool) {
	minMS, maxMS = 1<<62, 0
	unsure = map[string]bool{}
	for _, d := range f.devs {
		d.mu.Lock()
		devs = append(devs, DeviceAcks{Device: d.cred.ID, Epochs: slices.Clone(d.epochs), Acked: slices.Clone(d.acked)})
		if d.lastMS > 0 {
			maxMS = max(maxMS, d.lastMS)
		}
		for _, a := range d.acked {
			minMS = min(minMS, a.ms)
		}
		for _, r := range d.outbox {
			minMS = min(minMS, r.t.Reading.Time.UnixMilli())
		}
		if len(d.outbox)+d.inflight > 0 {
			unsure[d.cred.ID] = true
		}
		d.mu.Unlock()
	}
	return devs, minMS, maxMS, unsure
}

// Reconcile asks the server what it stored for the fleet's devices and
// compares it with what they saw acknowledged: first a count per device
// (count_over_time), then, for a device whose count differs or that still
// holds readings, its stored timestamps one by one.
func (f *Fleet) Reconcile(ctx context.Context, api *API) (Reconciliation, error) {
	devs, minMS, maxMS, unsure := f.acks()
	if maxMS == 0 || minMS > maxMS {
		return Reconciliation{}, nil
	}
	at := time.UnixMilli(maxMS)
	window := strconvMS(maxMS - minMS + 1)
	prefix := devs[0].Device
	for _, d := range devs[1:] {
		for !strings.HasPrefix(d.Device, prefix) {
			prefix = prefix[:len(prefix)-1]
		}
	}
	// Device ids are [A-Za-z0-9_-] (and '.' for a meter address), so the
	// prefix needs no escaping but a dot.
	sel := fmt.Sprintf(`%s{%s=~"%s.*"}`, store.MetricPower, store.LabelDevice, strings.ReplaceAll(prefix, ".", `\\.`))
	counts, err := api.Query(ctx, fmt.Sprintf("count_over_time(%s[%s])", sel, window), at)
	if err != nil {
		return Reconciliation{}, err
	}
	count := map[string]int{}
	for _, s := range counts {
		if len(s.Samples) == 1 {
			count[s.Labels[store.LabelDevice]] = int(s.Samples[0].V)
		}
	}
	stored := map[string][]int64{}
	for _, d := range devs {
		distinct := map[int64]bool{}
		for _, a := range d.Acked {
			distinct[a.ms] = true
		}
		if count[d.Device] == len(distinct) && !unsure[d.Device] {
			ts := make([]int64, 0, len(distinct))
			for t := range distinct {
				ts = append(ts, t)
			}
			stored[d.Device] = ts // the counts match: every acknowledged reading is there
			continue
		}
		q := fmt.Sprintf(`%s{%s="%s"}[%s]`, store.MetricPower, store.LabelDevice, d.Device, window)
		ss, err := api.Query(ctx, q, at)
		if err != nil {
			return Reconciliation{}, err
		}
		for _, s := range ss {
			for _, p := range s.Samples {
				stored[d.Device] = append(stored[d.Device], p.T)
			}
		}
	}
	return reconcile(devs, stored), nil
}
