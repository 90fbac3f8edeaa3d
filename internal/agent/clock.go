package agent

import (
	"time"
)

// ClockCheck returns the default clock test: a time before notBefore (the
// build date; a zero notBefore means 2026-01-01) is an unset clock, as on a
// board without a real-time clock that booted at 1970 or at its last
// shutdown time. On Linux the kernel's NTP state (adjtimex, read-only)
// must also say synchronised when it is available; see clock_linux.go.
func ClockCheck(notBefore time.Time) func(time.Time) bool {
	if notBefore.IsZero() {
		notBefore = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return func(t time.Time) bool {
		if t.Before(notBefore) {
			return false
		}
		synced, known := kernelSynced()
		return synced || !known
	}
}
