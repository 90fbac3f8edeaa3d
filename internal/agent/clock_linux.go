package agent

import "syscall"

// staUnsync is the kernel's STA_UNSYNC status bit (linux/timex.h).
const staUnsync = 0x0040

// timeError is adjtimex's TIME_ERROR return: the clock is not synchronised.
const timeError = 5

// kernelSynced asks the kernel whether an NTP client (systemd-timesyncd,
// chrony, ntpd) has synchronised the clock. adjtimex with no modes only
// reads. known is false when the call fails (e.g. a seccomp filter).
func kernelSynced() (synced, known bool) {
	var tx syscall.Timex
	state, err := syscall.Adjtimex(&tx)
	if err != nil {
		return false, false
	}
	return state != timeError && tx.Status&staUnsync == 0, true
}
