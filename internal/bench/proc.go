package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// ProcStat is a process's CPU time and memory, read from /proc (Linux).
type ProcStat struct {
	CPU     time.Duration // user + system time so far
	RSS     int64         // resident set size now, bytes (VmRSS)
	PeakRSS int64         // high-water mark, bytes (VmHWM)
}

// clockTick is USER_HZ, 100 on every Linux architecture Go supports.
const clockTick = 100

// ReadProc reads pid's /proc/<pid>/stat and status.
func ReadProc(pid int) (ProcStat, error) {
	var s ProcStat
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("bench: %w", err)
	}
	// The command name (field 2) may hold spaces; fields count from the
	// last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return s, fmt.Errorf("bench: /proc/%d/stat: no ')'", pid)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return s, fmt.Errorf("bench: /proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64) // field 14 utime
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64) // field 15 stime
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("bench: /proc/%d/stat: bad utime/stime", pid)
	}
	s.CPU = time.Duration(ut+st) * time.Second / clockTick
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("bench: %w", err)
	}
	for line := range bytes.SplitSeq(b, []byte{'\n'}) {
		for _, k := range []struct {
			name string
			dst  *int64
		}{{"VmRSS:", &s.RSS}, {"VmHWM:", &s.PeakRSS}} {
			if rest, ok := bytes.CutPrefix(line, []byte(k.name)); ok {
				fs := bytes.Fields(rest)
				if len(fs) >= 1 {
					v, err := strconv.ParseInt(string(fs[0]), 10, 64)
					if err == nil {
						*k.dst = v << 10 // kB
					}
				}
			}
		}
	}
	return s, nil
}
