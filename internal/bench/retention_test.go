package bench

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// TestRetentionSmoke backfills an hour of three devices, serves it from a
// child server with a few seconds of live fleet, and checks that every
// backfilled sample is read back through the server's query API, series by
// series.
func TestRetentionSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rep, err := RunRetention(ctx, RetentionOptions{
		Devices: 3, Hours: 1, Interval: 5 * time.Second, Live: 3 * time.Second, CheckDevices: 3,
		Command: testCommand, Log: tlog{t}, ServerLog: tlog{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", rep)
	// 3 devices x 720 readings, 6 samples each (no model), plus events.
	if rep.BackfillReadings != 3*720 {
		t.Errorf("%d readings backfilled, want %d", rep.BackfillReadings, 3*720)
	}
	if rep.BackfillSamples < 6*rep.BackfillReadings {
		t.Errorf("%d samples for %d readings, want at least 6 each", rep.BackfillSamples, rep.BackfillReadings)
	}
	if rep.CheckedDevices != 3 || rep.CheckMismatches != 0 || rep.CheckedSamples != rep.BackfillSamples {
		t.Errorf("read back %d samples of %d series of %d devices, %d mismatches (%s); %d written",
			rep.CheckedSamples, rep.CheckedSeries, rep.CheckedDevices, rep.CheckMismatches, rep.CheckMismatchOne, rep.BackfillSamples)
	}
	if rep.AnonBaseline <= 0 || rep.AnonBaseline > rep.RSSAnon {
		t.Errorf("empty server anon %d, this one's %d", rep.AnonBaseline, rep.RSSAnon)
	}
	if rep.Blocks < 1 || rep.BlockBytes <= rep.IndexBytes || rep.IndexBytes <= 0 || rep.DiskBytesPerSample <= 0 {
		t.Errorf("blocks %d, %d bytes, %.2f bytes/sample", rep.Blocks, rep.BlockBytes, rep.DiskBytesPerSample)
	}
	if rep.LiveReadings < 3 || rep.LiveSamples < 6*3 || rep.HeadSeries < 6*3 {
		t.Errorf("live: %d readings, %d samples, %d head series", rep.LiveReadings, rep.LiveSamples, rep.HeadSeries)
	}
	if rep.RSS <= 0 || rep.RSSAnon <= 0 || rep.RSSFile <= 0 || rep.HeapInuse <= 0 || rep.RSS < rep.RSSAnon ||
		rep.RSSFileStore <= 0 || rep.RSSFileStore >= rep.RSSFile {
		t.Errorf("memory: rss %d anon %d file %d (store %d) heap %d", rep.RSS, rep.RSSAnon, rep.RSSFile, rep.RSSFileStore, rep.HeapInuse)
	}
	if len(rep.QueryMS) != 9 {
		t.Errorf("queries %v, want 9", rep.QueryMS)
	}
	if rep.Extrapolated.Samples <= 0 || rep.Extrapolated.RSS <= 0 {
		t.Errorf("extrapolation %+v", rep.Extrapolated)
	}
}

func TestSmapsRss(t *testing.T) {
	smaps := "00400000-00452000 r-xp 00000000 08:02 173521 /usr/bin/loadwatch\nSize: 328 kB\nRss: 300 kB\n" +
		"7f00-7f10 r--s 00000000 08:02 11 /data/tsdb/01ABC/index\nSize: 64 kB\nRss:  12 kB\nPss: 12 kB\n" +
		"7f10-7f20 r--s 00000000 08:02 12 /data/tsdb/01ABC/chunks/000001\nRss: 30 kB\n" +
		"7f20-7f30 rw-p 00000000 00:00 0 \nRss: 999 kB\n" +
		"7f30-7f40 r--s 00000000 08:02 13 /data/tsdb2/x\nRss: 7 kB\n"
	got := smapsRss([]byte(smaps+"7f40-7f50 r--s 00000000 08:02 14 /data/tsdb/chunks_head/000001\nRss: 5 kB\n"), "/data/tsdb/")
	if got != (storeMaps{Index: 12 << 10, Chunks: 30 << 10, HeadChunks: 5 << 10}) || got.total() != 47<<10 {
		t.Errorf("store Rss %+v", got)
	}
}

func TestParseStatus(t *testing.T) {
	m := parseStatus([]byte("Name:\tloadwatch\nVmHWM:\t  200 kB\nVmRSS:\t  150 kB\nRssAnon:\t 100 kB\nRssFile:\t 40 kB\nRssShmem:\t 10 kB\nThreads: 9\n"))
	if m != (mem{rss: 150 << 10, anon: 100 << 10, file: 40 << 10, shmem: 10 << 10, peak: 200 << 10}) {
		t.Errorf("%+v", m)
	}
}

func TestCheckDevices(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "e"}
	for _, c := range []struct {
		n    int
		want string
	}{{1, "a"}, {2, "ae"}, {3, "ace"}, {5, "abcde"}, {9, "abcde"}} {
		got := ""
		for _, s := range checkDevices(ids, c.n) {
			got += s
		}
		if got != c.want {
			t.Errorf("checkDevices(%d) = %s, want %s", c.n, got, c.want)
		}
	}
}

func TestSeriesKey(t *testing.T) {
	a := SeriesKey("m", map[string]string{"device": "x", "class": "laptop", "__name__": "m"})
	b := SeriesKey("m", map[string]string{"class": "laptop", "device": "x"})
	if a != b || a != `m{class="laptop",device="x"}` {
		t.Errorf("%s vs %s", a, b)
	}
}

func TestExtrapolate(t *testing.T) {
	r := RetentionReport{Devices: 1000, RSSAnon: 120 << 20, AnonBaseline: 20 << 20, RSSFile: 80 << 20, RSSFileStore: 50 << 20, BackfillSamples: 1000 * 17280 * 7,
		SamplesPerReading: 7, DiskBytesPerSample: 1.5}
	e := r.Extrapolate(10000, 24, 5*time.Second)
	if e.Samples != 10000*17280*7 || !strings.Contains(e.Formula, "anon'") {
		t.Errorf("samples %v", e.Samples)
	}
	if math.Abs(e.Anon-10*float64(100<<20)-float64(20<<20)) > 1 || math.Abs(e.File-10*float64(50<<20)-float64(30<<20)) > 1 || math.Abs(e.RSS-e.Anon-e.File) > 1 {
		t.Errorf("%+v", e)
	}
	if math.Abs(e.Disk-1.5*e.Samples) > 1 {
		t.Errorf("disk %v", e.Disk)
	}
}

// FuzzProcParsers: /proc text never panics the parsers, sizes are never
// negative, and the store total is the sum of its kinds.
func FuzzProcParsers(f *testing.F) {
	f.Add([]byte("VmRSS:\t  150 kB\nRssAnon:\t 100 kB\n"))
	f.Add([]byte("7f00-7f10 r--s 00000000 08:02 11 /data/tsdb/01ABC/index\nRss:  12 kB\n"))
	f.Add([]byte("a b c d e /data/tsdb/chunks_head/1\nRss: -4 kB\nRss:\n:\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m := smapsRss(b, "/data/tsdb/")
		if m.total() != m.Index+m.Chunks+m.HeadChunks+m.Other || m.Index < 0 || m.Chunks < 0 || m.HeadChunks < 0 || m.Other < 0 {
			t.Fatalf("%+v", m)
		}
		if st := parseStatus(b); st.rss < 0 || st.anon < 0 || st.file < 0 || st.shmem < 0 || st.peak < 0 {
			t.Fatalf("%+v", st)
		}
	})
}

func BenchmarkSmapsRss(b *testing.B) {
	var buf []byte
	for i := range 200 {
		buf = fmt.Appendf(buf, "7f%04x-7f%04x r--s 00000000 08:02 %d /data/tsdb/01ABC%03d/chunks/000001\nSize: 64 kB\nRss: 12 kB\nPss: 12 kB\n", i, i+1, i, i)
	}
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if smapsRss(buf, "/data/tsdb/").Chunks != 200*12<<10 {
			b.Fatal("wrong sum")
		}
	}
}
