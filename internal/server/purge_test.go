package server

import (
	"context"
	"sort"
	"testing"
	"time"

	"loadwatch/internal/store"
)

// TestPurgeDeletesDeviceAndMeters: a purge deletes the device's series and
// its meters' (<id>.<addr>), not those of a device whose id merely starts
// the same.
func TestPurgeDeletesDeviceAndMeters(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	now := time.Now()
	var batch []store.Sample
	for _, dev := range []string{"pi", "pi.3", "pi2", "pix.1"} {
		batch = append(batch, store.Sample{Metric: store.MetricPower, Labels: []store.Label{{Name: store.LabelDevice, Value: dev}}, T: store.Millis(now), V: 1})
	}
	if err := st.Append(ctx, batch); err != nil {
		t.Fatal(err)
	}
	p := &purger{st: st}
	if err := p.PurgeDevice(ctx, "pi", now); err != nil {
		t.Fatal(err)
	}
	res, err := st.Query(ctx, `sort_desc(count by (device) (loadwatch_power_watts))`, now)
	if err != nil {
		t.Fatal(err)
	}
	var vals []string
	for _, s := range res.Series {
		for _, l := range s.Labels {
			if l.Name == store.LabelDevice {
				vals = append(vals, l.Value)
			}
		}
	}
	sort.Strings(vals)
	if got := len(vals); got != 2 || vals[0] != "pi2" || vals[1] != "pix.1" {
		t.Errorf("devices left after purging pi: %v, want [pi2 pix.1]", vals)
	}
}
