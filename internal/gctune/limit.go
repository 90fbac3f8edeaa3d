package gctune

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// AutoRatio is the share of the memory available to the process that
// AutoLimit gives the Go runtime's soft limit, as Prometheus does (its
// --auto-gomemlimit.ratio): the rest is left to the page cache of the
// store's block files and to what the runtime does not count.
const AutoRatio = 0.9

// AutoLimit returns a soft memory limit for the Go runtime: AutoRatio of
// the smaller of the cgroup's memory limit (v2 memory.max, or v1
// memory.limit_in_bytes) and the machine's memory (MemTotal), read from
// root (os.DirFS("/") in production), and says where the figure came from.
// Near the limit the GC runs more often instead of letting the heap grow,
// so short bursts (a block compaction, a large query) do not push the
// process past what the machine or container has. An error means neither
// figure could be read (not Linux).
func AutoLimit(root fs.FS) (limit int64, from string, err error) {
	total, terr := memTotal(root)
	cg, cgFrom := cgroupLimit(root)
	var size int64
	switch {
	case cg > 0 && (terr != nil || cg < total):
		size, from = cg, cgFrom
	case terr == nil:
		size, from = total, "/proc/meminfo MemTotal"
	default:
		return 0, "", fmt.Errorf("gctune: no memory size: %w", terr)
	}
	if size < minAutoSize {
		return 0, "", fmt.Errorf("gctune: %s gives %d bytes, too small to be real", from, size)
	}
	return int64(float64(size) * AutoRatio), from, nil
}

// minAutoSize is the least memory size AutoLimit believes (16 MiB).
const minAutoSize = 16 << 20

// memTotal reads MemTotal from /proc/meminfo, in bytes.
func memTotal(root fs.FS) (int64, error) {
	b, err := fs.ReadFile(root, "proc/meminfo")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("gctune: /proc/meminfo: MemTotal %q", rest)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb <= 0 || kb > 1<<50 {
			return 0, fmt.Errorf("gctune: /proc/meminfo: MemTotal %q", rest)
		}
		return kb << 10, nil
	}
	return 0, errors.New("gctune: /proc/meminfo has no MemTotal")
}

// cgroupLimit returns the cgroup's memory limit in bytes, or 0 when there
// is none or it cannot be read.
func cgroupLimit(root fs.FS) (int64, string) {
	for _, p := range []string{"sys/fs/cgroup/memory.max", "sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := fs.ReadFile(root, p)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0, ""
		}
		n, err := strconv.ParseInt(s, 10, 64)
		// cgroup v1 reports "no limit" as a huge page-rounded number.
		if err != nil || n <= 0 || n >= 1<<60 {
			return 0, ""
		}
		return n, "/" + p
	}
	return 0, ""
}
