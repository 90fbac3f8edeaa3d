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

func TestFleetDutyCycledSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := RunFleet(ctx, Options{
		Devices: 10, Interval: 50 * time.Millisecond, Batch: 5, DutyCycled: true, Duration: 2 * time.Second,
		Command: testCommand, Log: tlog{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.ReadingsSent == 0 || rep.ReadingsAcked != rep.ReadingsSent || rep.ReadingsStored != rep.ReadingsAcked || rep.ReadingsLost != 0 {
		t.Errorf("sent %d, acknowledged %d, stored %d, lost %d", rep.ReadingsSent, rep.ReadingsAcked, rep.ReadingsStored, rep.ReadingsLost)
	}
	// Every wake is a connection: at least one per device per report.
	if min := uint64(10 * 2); rep.Connects < min {
		t.Errorf("%d connects in 2 s of 10 devices reporting every 250 ms; want at least %d", rep.Connects, min)
	}
}
