//go:build amd64 && !purego

package forest

import (
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
