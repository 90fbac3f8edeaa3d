package gctune

import (
	"os"
	"testing"
	"testing/fstest"
)

func TestAutoLimit(t *testing.T) {
	meminfo := func(s string) *fstest.MapFile {
		return &fstest.MapFile{Data: []byte("MemFree: 1 kB\n" + s + "\nBuffers: 2 kB\n")}
	}
	const GiB = 1 << 30
	for _, c := range []struct {
		name  string
		files fstest.MapFS
		want  int64
		from  string
		bad   bool
	}{
		{"machine only", fstest.MapFS{"proc/meminfo": meminfo("MemTotal:       25165824 kB")}, ratio(24 * GiB), "/proc/meminfo MemTotal", false},
		{"cgroup v2 below the machine", fstest.MapFS{
			"proc/meminfo":             meminfo("MemTotal: 25165824 kB"),
			"sys/fs/cgroup/memory.max": {Data: []byte("1073741824\n")},
		}, ratio(GiB), "/sys/fs/cgroup/memory.max", false},
		{"cgroup v2 unlimited", fstest.MapFS{
			"proc/meminfo":             meminfo("MemTotal: 1048576 kB"),
			"sys/fs/cgroup/memory.max": {Data: []byte("max\n")},
		}, ratio(GiB), "/proc/meminfo MemTotal", false},
		{"cgroup above the machine", fstest.MapFS{
			"proc/meminfo":             meminfo("MemTotal: 1048576 kB"),
			"sys/fs/cgroup/memory.max": {Data: []byte("4294967296")},
		}, ratio(GiB), "/proc/meminfo MemTotal", false},
		{"cgroup v1", fstest.MapFS{
			"proc/meminfo": meminfo("MemTotal: 25165824 kB"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes": {Data: []byte("536870912\n")},
		}, ratio(GiB / 2), "/sys/fs/cgroup/memory/memory.limit_in_bytes", false},
		{"cgroup v1 unlimited", fstest.MapFS{
			"proc/meminfo": meminfo("MemTotal: 1048576 kB"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes": {Data: []byte("9223372036854771712\n")},
		}, ratio(GiB), "/proc/meminfo MemTotal", false},
		{"cgroup without meminfo", fstest.MapFS{"sys/fs/cgroup/memory.max": {Data: []byte("1073741824")}}, ratio(GiB), "/sys/fs/cgroup/memory.max", false},
		{"garbage cgroup ignored", fstest.MapFS{
			"proc/meminfo":             meminfo("MemTotal: 1048576 kB"),
			"sys/fs/cgroup/memory.max": {Data: []byte("lots")},
		}, ratio(GiB), "/proc/meminfo MemTotal", false},
		{"nothing", fstest.MapFS{}, 0, "", true},
		{"bad MemTotal", fstest.MapFS{"proc/meminfo": meminfo("MemTotal: many kB")}, 0, "", true},
		{"MemTotal in MB", fstest.MapFS{"proc/meminfo": meminfo("MemTotal: 1024 MB")}, 0, "", true},
		{"no MemTotal", fstest.MapFS{"proc/meminfo": meminfo("MemAvailable: 1024 kB")}, 0, "", true},
	} {
		got, from, err := AutoLimit(c.files)
		if (err != nil) != c.bad || got != c.want || from != c.from {
			t.Errorf("%s: AutoLimit = %d, %q, %v; want %d, %q, error %v", c.name, got, from, err, c.want, c.from, c.bad)
		}
	}
}

// On this Linux machine the limit is 90 % of something real.
func TestAutoLimitHere(t *testing.T) {
	got, from, err := AutoLimit(os.DirFS("/"))
	if err != nil {
		t.Skipf("no memory figures here: %v", err)
	}
	if got < 64<<20 || from == "" {
		t.Errorf("AutoLimit here = %d from %q", got, from)
	}
}

func FuzzAutoLimit(f *testing.F) {
	f.Add([]byte("MemTotal: 1048576 kB\n"), []byte("max"))
	f.Add([]byte("MemTotal: 99999999999999999999 kB"), []byte("-1"))
	f.Fuzz(func(t *testing.T, meminfo, cg []byte) {
		got, _, err := AutoLimit(fstest.MapFS{"proc/meminfo": {Data: meminfo}, "sys/fs/cgroup/memory.max": {Data: cg}})
		if err == nil && got <= 0 {
			t.Fatalf("limit %d without an error", got)
		}
	})
}

func BenchmarkAutoLimit(b *testing.B) {
	fsys := fstest.MapFS{"proc/meminfo": {Data: []byte("MemTotal: 25165824 kB\n")}, "sys/fs/cgroup/memory.max": {Data: []byte("max\n")}}
	for b.Loop() {
		if _, _, err := AutoLimit(fsys); err != nil {
			b.Fatal(err)
		}
	}
}

func ratio(n float64) int64 { return int64(n * AutoRatio) }
