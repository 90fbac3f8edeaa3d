//go:build amd64 && !purego

package forest

import (
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"testing"
)

// TestCPUAVX512 compares the package's own CPUID/XGETBV check with the
// flags Linux reports (the kernel lists avx512f only when it saves the
// AVX-512 state).
func TestCPUAVX512(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("compares with /proc/cpuinfo")
	}
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Skip(err)
	}
	var flags []string
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "flags" {
			flags = strings.Fields(v)
			break
		}
	}
	want := false
	for _, f := range flags {
		if f == "avx512f" {
			want = true
		}
	}
	if got := cpuAVX512(); got != want {
		t.Errorf("cpuAVX512() = %v, /proc/cpuinfo avx512f = %v", got, want)
	}
	t.Logf("AVX-512: %v; PredictBatch uses the vector walk: %v", haveAVX512, simdBatch)
}

// TestTransposeAVX512 compares the vector transposition of the row-lane
// top walk with transposeBlock, bit for bit (NaN as -Inf and +Inf, -0,
// NaN payloads, infinities), for widths around its 16-feature chunks and
// row counts around its 16-row tiles.
func TestTransposeAVX512(t *testing.T) {
	if !haveAVX512 {
		t.Skip("no AVX-512")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	specials := []float32{nan, math.Float32frombits(0x7fc00001), math.Float32frombits(0xffc00000), float32(math.Inf(1)),
		float32(math.Inf(-1)), float32(math.Copysign(0, -1)), 0, 1e-40, -3.5}
	for _, nf := range []int{1, 9, 15, 16, 17, 42, 64, 65, 128} {
		for _, rows := range []int{1, 15, 16, 17, 40, 63, 64} {
			X := make([]float32, (rows+1)*nf)
			for i := range X {
				X[i] = float32(rng.NormFloat64())
				if rng.IntN(4) == 0 {
					X[i] = specials[rng.IntN(len(specials))]
				}
			}
			var want, got blockX
			transposeBlock(&want, X, nf, 1, rows)
			transposeAVX512(&got[0], &X[nf], uint32(nf), uint32(rows))
			for c := range 2 * nf {
				for r := range rows {
					if w, g := math.Float32bits(want[c*blockRows+r]), math.Float32bits(got[c*blockRows+r]); w != g {
						t.Fatalf("%d features, %d rows: column %d row %d is %#x, want %#x", nf, rows, c, r, g, w)
					}
				}
			}
		}
	}
}
