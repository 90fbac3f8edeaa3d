package agent

import (
	"testing"
	"time"
)

func TestClockCheckRefusesAnUnsetClock(t *testing.T) {
	check := ClockCheck(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC))
	for _, tm := range []time.Time{time.Unix(0, 0), time.Date(2026, 5, 31, 23, 0, 0, 0, time.UTC)} {
		if check(tm) {
			t.Errorf("%v before the build date counted as synchronised", tm)
		}
	}
	// After the floor the kernel decides (when it can say).
	synced, known := kernelSynced()
	if got := check(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)); got != (synced || !known) {
		t.Errorf("after the floor: %v, kernel says synced=%v known=%v", got, synced, known)
	}
	t.Logf("this machine's kernel clock state: synced=%v known=%v", synced, known)
}
