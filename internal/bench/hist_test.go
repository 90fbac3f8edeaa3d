package bench

import (
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"
)

func TestHistQuantiles(t *testing.T) {
	var h Hist
	r := rand.New(rand.NewPCG(1, 2))
	var all []time.Duration
	for range 100000 {
		d := time.Duration(r.ExpFloat64() * float64(3*time.Millisecond))
		all = append(all, d)
		h.Record(d)
	}
	slices.Sort(all)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := all[int(q*float64(len(all)))-1]
		got := h.Quantile(q)
		if got < exact || float64(got) > float64(exact)*1.04 {
			t.Errorf("q%.3f = %v, exact %v (want within +4 %%)", q, got, exact)
		}
	}
	if h.Max() != all[len(all)-1] || h.Quantile(1) != h.Max() {
		t.Errorf("max %v / q1 %v, want %v", h.Max(), h.Quantile(1), all[len(all)-1])
	}
	for _, ns := range []int64{0, 1, 31, 32, 33, 63, 64, 1000, 1 << 40} {
		if i := bucketOf(ns); bucketUpper(i) < ns || (i > 0 && bucketUpper(i-1) >= ns) {
			t.Errorf("%d ns in bucket %d with upper %d", ns, i, bucketUpper(i))
		}
	}
}

func TestReadProc(t *testing.T) {
	s, err := ReadProc(os.Getpid())
	if err != nil {
		t.Skip("no /proc:", err)
	}
	if s.RSS <= 0 || s.PeakRSS < s.RSS {
		t.Errorf("RSS %d, peak %d", s.RSS, s.PeakRSS)
	}
	if _, err := ReadProc(-5); err == nil {
		t.Error("pid -5 read")
	}
}
