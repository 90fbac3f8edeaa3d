package bench

import (
	"context"
	"testing"
	"time"
)

func TestChaosSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := RunChaos(ctx, ChaosOptions{
		Options: Options{Devices: 10, Interval: 50 * time.Millisecond, Duration: 6 * time.Second,
			Command: testCommand, Log: tlog{t}},
		HostileRate: 40, Down: 500 * time.Millisecond, CrashAgents: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("events %+v", rep.Events)
	t.Logf("hostile %+v", rep.Hostile)
	t.Logf("rejections %v", rep.Rejections)
	t.Logf("sent %d acked %d stored %d lost %d resent %d stored-unacked %d", rep.ReadingsSent, rep.ReadingsAcked, rep.ReadingsStored, rep.ReadingsLost, rep.ReadingsResent, rep.StoredUnacked)
	if rep.ReadingsLost != 0 || rep.ReadingsUnacked != 0 || rep.ReadingsStored != rep.ReadingsAcked || rep.ReadingsAcked != rep.ReadingsSent {
		t.Errorf("sent %d, acknowledged %d, stored %d, lost %d (%v), unacknowledged %d",
			rep.ReadingsSent, rep.ReadingsAcked, rep.ReadingsStored, rep.ReadingsLost, rep.Gaps, rep.ReadingsUnacked)
	}
	if len(rep.Events) != 3 || rep.ServerStarts != 3 || rep.ServerCrashes != 0 {
		t.Errorf("%d events, %d server starts, %d crashes; want 3, 3, 0", len(rep.Events), rep.ServerStarts, rep.ServerCrashes)
	}
	if rep.HostileUnexpected != 0 {
		t.Errorf("%d hostile payloads got an unexpected answer: %+v", rep.HostileUnexpected, rep.Hostile)
	}
	for _, k := range hostileKinds {
		if rep.Hostile[k].Sent == 0 {
			t.Errorf("no %s payload answered", k)
		}
	}
	for _, reason := range []string{"too_large", "nan_or_inf", "bad_type", "negative_power", "future_timestamp", "duplicate", "malformed_json", "missing_field", "acl_denied"} {
		if rep.Rejections[reason] == 0 {
			t.Errorf("server counted no %s rejection: %v", reason, rep.Rejections)
		}
	}
}
