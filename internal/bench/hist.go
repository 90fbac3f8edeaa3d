package bench

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Hist is a lock-free latency histogram: 32 sub-buckets per power of two
// of nanoseconds (about 2 % resolution) from 1 ns to about 9 minutes.
// Record is safe for concurrent use.
type Hist struct {
	counts [40 * subBuckets]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64
}

const subBits = 5
const subBuckets = 1 << subBits

func bucketOf(ns int64) int {
	if ns < subBuckets {
		return int(max(ns, 0))
	}
	e := bits.Len64(uint64(ns)) - 1 - subBits // ns >> e is in [32, 64)
	i := (e+1)*subBuckets + int(uint64(ns)>>e) - subBuckets
	return min(i, 40*subBuckets-1)
}

// bucketUpper is the largest value that falls in bucket i.
func bucketUpper(i int) int64 {
	if i < subBuckets {
		return int64(i)
	}
	e := i/subBuckets - 1
	m := int64(i%subBuckets + subBuckets)
	return (m+1)<<e - 1
}

// Record adds one latency.
func (h *Hist) Record(d time.Duration) {
	ns := int64(d)
	h.counts[bucketOf(ns)].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if ns <= m || h.max.CompareAndSwap(m, ns) {
			return
		}
	}
}

// Count is the number of latencies recorded.
func (h *Hist) Count() uint64 { return h.n.Load() }

// Max is the largest latency recorded.
func (h *Hist) Max() time.Duration { return time.Duration(h.max.Load()) }

// Quantile returns the latency below which a fraction q of the recorded
// ones fall (the upper edge of its bucket, capped at Max); 0 when empty.
func (h *Hist) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = max(rank, 1)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return min(time.Duration(bucketUpper(i)), h.Max())
		}
	}
	return h.Max()
}

// Reset clears the histogram (not atomically with concurrent Records).
func (h *Hist) Reset() {
	for i := range h.counts {
		h.counts[i].Store(0)
	}
	h.n.Store(0)
	h.max.Store(0)
}
