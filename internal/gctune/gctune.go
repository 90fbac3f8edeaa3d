// Package gctune keeps the Go garbage collector's headroom proportional to
// the live heap alone, as GOGC meant before Go 1.18.
//
// Since Go 1.18 the pacer sets the next heap goal to
//
//	live + (live + stack scan + globals) x GOGC/100
//
// so the bytes of goroutine stack scanned in the last cycle add to the
// headroom. A server holding many idle connections, two goroutines each
// (the embedded MQTT broker), scans stacks that produce no garbage: at
// 10,000 devices 73 MB of them, next to a live heap of 270 MB, raised the
// heap goal by as much. Go's release notes name the remedy: tune
// GOGC. A Governor does that after every collection, choosing the percent
// that gives
//
//	goal = live + max(live x base/100, floor)
//
// where base is the GOGC in force when it starts. It never goes above base
// (so it never uses more memory than Go would) nor below MinPercent, and
// does nothing when the collector is off (GOGC < 0). The floor keeps small
// heaps, whose collections are cheap but frequent, as Go would run them.
package gctune

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

const (
	// DefaultFloor is the least headroom a Governor leaves (64 MiB).
	DefaultFloor = 64 << 20
	// MinPercent is the lowest GOGC a Governor sets.
	MinPercent = 10
	// DefaultInterval is how often a Governor looks for a finished cycle.
	DefaultInterval = time.Second
)

// Percent returns the GOGC that makes the pacer's headroom, (live + stacks
// + globals) x GOGC/100, equal to max(live x base/100, floor), clamped to
// [min(MinPercent, base), base]. A base <= 0 is returned unchanged (GC off
// or an unset value).
func Percent(base int, floor, live, stacks, globals uint64) int {
	if base <= 0 {
		return base
	}
	scan := live + stacks + globals
	if scan == 0 {
		return base
	}
	want := max(live/100*uint64(base)+live%100*uint64(base)/100, floor)
	// ceil(100 x want / scan) in floating point: the inputs are byte
	// counts far below 2^53.
	p := int(float64(want)*100/float64(scan) + 0.999999)
	return min(base, max(p, min(MinPercent, base)))
}

// Governor sets GOGC after each collection (see the package comment). The
// zero value uses DefaultFloor and DefaultInterval.
type Governor struct {
	Floor    uint64        // least headroom in bytes
	Interval time.Duration // polling period of runtime/metrics

	// set applies a percent (debug.SetGCPercent); tests replace it.
	set func(int) int
}

var sampleNames = [...]string{
	"/gc/cycles/total:gc-cycles",
	"/gc/heap/live:bytes",
	"/gc/scan/stack:bytes",
	"/gc/scan/globals:bytes",
	"/gc/gogc:percent",
}

// Run adjusts GOGC until ctx ends, then restores the percent it found. It
// returns nil at once when the collector is off or the runtime lacks the
// metrics it reads.
func (g *Governor) Run(ctx context.Context) error {
	floor := g.Floor
	if floor == 0 {
		floor = DefaultFloor
	}
	every := g.Interval
	if every <= 0 {
		every = DefaultInterval
	}
	set := g.set
	if set == nil {
		set = debug.SetGCPercent
	}
	s := make([]metrics.Sample, len(sampleNames))
	for i, n := range sampleNames {
		s[i].Name = n
	}
	metrics.Read(s)
	for _, v := range s {
		if v.Value.Kind() != metrics.KindUint64 {
			return nil // an older or newer runtime without these metrics
		}
	}
	base := int(s[4].Value.Uint64())
	if base <= 0 || base > 1<<20 {
		return nil // GOGC=off reads as a huge value on some runtimes
	}
	cur := base
	defer func() { set(base) }()
	var cycles uint64
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		metrics.Read(s)
		if c := s[0].Value.Uint64(); c != cycles {
			cycles = c
			p := Percent(base, floor, s[1].Value.Uint64(), s[2].Value.Uint64(), s[3].Value.Uint64())
			// Small moves are not worth recomputing the pacer's goal.
			if d := p - cur; d*20 > cur || -d*20 > cur || (p == base && cur != base) {
				set(p)
				cur = p
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
