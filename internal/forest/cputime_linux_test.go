package forest

import "syscall"

// threadCPU returns the CPU time the calling OS thread has used, in
// seconds (Linux RUSAGE_THREAD), or a negative number when unavailable.
func threadCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		return -1
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
