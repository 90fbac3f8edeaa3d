package store

import (
	"context"
	"testing"
	"time"

	"loadwatch/internal/power"
)

func TestReadingSamples(t *testing.T) {
	at := time.UnixMilli(base)
	r := power.Reading{Time: at, Voltage: 229.5, Current: 0.25, Power: 55, Frequency: 50, PF: 0.96, Energy: 12,
		Has: power.FieldVoltage | power.FieldPower | power.FieldPF}
	got := ReadingSamples(nil, DeviceLabels("kitchen"), r)
	want := map[string]float64{MetricVoltage: 229.5, MetricPower: 55, MetricPowerFactor: 0.96}
	if len(got) != len(want) {
		t.Fatalf("got %d samples %+v, want %d (missing fields left out)", len(got), got, len(want))
	}
	for _, s := range got {
		if v, ok := want[s.Metric]; !ok || v != s.V || s.T != base || s.Labels[0].Value != "kitchen" {
			t.Errorf("unexpected %+v", s)
		}
	}
	if e := EnergySample(DeviceLabels("kitchen"), base, 2); e.V != 7200 || e.Metric != MetricEnergy {
		t.Errorf("energy %+v", e)
	}
	s := openTest(t, Options{})
	batch := append(got, EnergySample(DeviceLabels("kitchen"), base, 2),
		ClassSample("kitchen", "kettle", base, 0.9), EventSample("kitchen", "load_on", base))
	if err := s.Append(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	res, err := s.Query(context.Background(), `count({device="kitchen"})`, at)
	if err != nil || res.Series[0].Points[0].V != 6 {
		t.Fatalf("%+v %v", res, err)
	}
}
