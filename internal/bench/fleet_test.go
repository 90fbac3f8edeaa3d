package bench

import (
	"context"
	"testing"
	"time"
)

func TestFleetSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := RunFleet(ctx, Options{
		Devices: 20, Interval: 50 * time.Millisecond, Duration: 2 * time.Second,
		Command: testCommand, Log: tlog{t}, ServerLog: tlog{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", rep)
	if rep.ReadingsSent == 0 || rep.ReadingsAcked != rep.ReadingsSent || rep.ReadingsStored != rep.ReadingsAcked {
		t.Errorf("sent %d, acknowledged %d, stored %d: want all equal and > 0", rep.ReadingsSent, rep.ReadingsAcked, rep.ReadingsStored)
	}
	if rep.ReadingsLost != 0 || len(rep.Gaps) != 0 || rep.ReadingsUnacked != 0 {
		t.Errorf("lost %d (gaps %v), unacknowledged %d", rep.ReadingsLost, rep.Gaps, rep.ReadingsUnacked)
	}
	if rep.LatencyP99MS <= 0 || rep.ServerRSSBytes <= 0 {
		t.Errorf("p99 %v ms, server RSS %d: not measured", rep.LatencyP99MS, rep.ServerRSSBytes)
	}
}
