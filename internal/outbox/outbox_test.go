package outbox

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func payloadFor(seq uint64) []byte {
	return []byte(fmt.Sprintf(`{"reading":%d,"pad":"%s"}`, seq, strings.Repeat("x", int(seq%17))))
}

func mustOpen(t *testing.T, dir string, opts Options) *Outbox {
	t.Helper()
	o, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func appendN(t *testing.T, o *Outbox, n int) {
	t.Helper()
	for range n {
		want := o.NextSeq()
		seq, err := o.Append(payloadFor(want))
		if err != nil || seq != want {
			t.Fatalf("append: seq %d want %d err %v", seq, want, err)
		}
	}
}

// checkPending asserts that the pending records are exactly seqs from..to
// with their payloads.
func checkPending(t *testing.T, o *Outbox, from, to uint64) {
	t.Helper()
	recs, err := o.Pending(1 << 30)
	if err != nil {
		t.Fatal(err)
	}
	if to < from {
		if len(recs) != 0 {
			t.Fatalf("pending %d records, want none", len(recs))
		}
		return
	}
	if uint64(len(recs)) != to-from+1 {
		t.Fatalf("pending %d records, want %d..%d", len(recs), from, to)
	}
	for i, r := range recs {
		if r.Seq != from+uint64(i) || !bytes.Equal(r.Payload, payloadFor(r.Seq)) {
			t.Fatalf("record %d: seq %d payload %s", i, r.Seq, r.Payload)
		}
	}
	if st := o.Stats(); st.Pending != uint64(len(recs)) {
		t.Fatalf("Stats.Pending %d, want %d", st.Pending, len(recs))
	}
}

func TestAppendPendingAckReopen(t *testing.T) {
	dir := t.TempDir()
	o := mustOpen(t, dir, Options{})
	epoch := o.Epoch()
	if len(epoch) != 16 || !o.Stats().NewEpoch {
		t.Fatalf("epoch %q", epoch)
	}
	appendN(t, o, 100)
	recs, err := o.Pending(10)
	if err != nil || len(recs) != 10 || recs[0].Seq != 1 || recs[9].Seq != 10 || recs[0].Epoch != epoch {
		t.Fatalf("%v %v", recs, err)
	}
	if err := o.Ack(10); err != nil {
		t.Fatal(err)
	}
	checkPending(t, o, 11, 100)
	if err := o.Ack(5); err != nil { // older ack: no-op
		t.Fatal(err)
	}
	if err := o.Ack(101); !errors.Is(err, ErrAckBeyond) {
		t.Fatalf("ack beyond: %v", err)
	}
	if err := o.SaveUserState([]byte(`{"ledger":{"total":12}}`)); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Append(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	o = mustOpen(t, dir, Options{})
	defer o.Close()
	if o.Epoch() != epoch || o.NextSeq() != 101 || o.Stats().NewEpoch {
		t.Fatalf("reopen: epoch %q next %d", o.Epoch(), o.NextSeq())
	}
	if string(o.UserState()) != `{"ledger":{"total":12}}` {
		t.Fatalf("user state %s", o.UserState())
	}
	checkPending(t, o, 11, 100)
	appendN(t, o, 1)
	checkPending(t, o, 11, 101)
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSegmentsRollAndDelete(t *testing.T) {
	dir := t.TempDir()
	o := mustOpen(t, dir, Options{SegmentSize: 1024, MaxBytes: 1 << 20, Sync: SyncManual})
	defer o.Close()
	appendN(t, o, 500)
	n := len(segFiles(t, dir))
	if n < 10 {
		t.Fatalf("%d segments", n)
	}
	if err := o.Ack(250); err != nil {
		t.Fatal(err)
	}
	if m := len(segFiles(t, dir)); m >= n*2/3 || m != o.Stats().Segments {
		t.Fatalf("%d segments after acking half (was %d, stats %d)", m, n, o.Stats().Segments)
	}
	checkPending(t, o, 251, 500)
	if err := o.Ack(500 - 1); err != nil {
		t.Fatal(err)
	}
	checkPending(t, o, 500, 500)
	if err := o.Ack(500); err != nil {
		t.Fatal(err)
	}
	checkPending(t, o, 501, 500)
	if m := len(segFiles(t, dir)); m != 1 {
		t.Fatalf("%d segments when all acked", m)
	}
}

func TestBoundDropsOldest(t *testing.T) {
	dir := t.TempDir()
	o := mustOpen(t, dir, Options{SegmentSize: 2048, MaxBytes: 8192, Sync: SyncManual})
	defer o.Close()
	appendN(t, o, 1000)
	st := o.Stats()
	if st.Dropped == 0 || st.Pending+st.Dropped != 1000 || st.Bytes > 8192 {
		t.Fatalf("stats %+v", st)
	}
	checkPending(t, o, 1000-st.Pending+1, 1000)
	// An ack in the middle of the retained window still works.
	if err := o.Ack(990); err != nil {
		t.Fatal(err)
	}
	checkPending(t, o, 991, 1000)
}

// TestTornTail cuts the last segment at every byte offset inside its last
// two records and checks that Open keeps exactly the complete records,
// never reuses a seq, and accepts new appends.
func TestTornTail(t *testing.T) {
	src := t.TempDir()
	o := mustOpen(t, src, Options{})
	appendN(t, o, 20)
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	seg := segFiles(t, src)[0]
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	state, err := os.ReadFile(filepath.Join(src, stateFile))
	if err != nil {
		t.Fatal(err)
	}
	// Offsets of the record boundaries.
	var ends []int
	for off := 0; off < len(data); {
		_, _, _, n, err := decodeRecord(data[off:])
		if err != nil {
			t.Fatal(err)
		}
		off += n
		ends = append(ends, off)
	}
	for cut := ends[17]; cut < len(data); cut++ {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(seg)), data[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, stateFile), state, 0o600); err != nil {
			t.Fatal(err)
		}
		o, err := Open(dir, Options{})
		if err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		complete := uint64(18)
		if cut >= ends[18] {
			complete = 19
		}
		checkPending(t, o, 1, complete)
		if torn := o.Stats().Torn; (cut != ends[17] && cut != ends[18]) != (torn > 0) {
			t.Fatalf("cut %d: torn %d", cut, torn)
		}
		if seq, err := o.Append([]byte("after")); err != nil || seq != 21 {
			t.Fatalf("cut %d: append seq %d err %v (a seq must never be reused)", cut, seq, err)
		}
		o.Close()
	}
}

func TestCorruptMiddleAndGarbage(t *testing.T) {
	dir := t.TempDir()
	o := mustOpen(t, dir, Options{SegmentSize: 1024, MaxBytes: 1 << 20})
	appendN(t, o, 60)
	o.Close()
	segs := segFiles(t, dir)
	if len(segs) < 3 {
		t.Fatalf("%d segments", len(segs))
	}
	// Flip a byte in the middle of the first segment.
	b, _ := os.ReadFile(segs[0])
	b[len(b)/2] ^= 0xFF
	os.WriteFile(segs[0], b, 0o600)
	// And append garbage to the last.
	f, _ := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte{0xff, 0xff, 0xff, 0x7f, 1, 2, 3})
	f.Close()
	o = mustOpen(t, dir, Options{SegmentSize: 1024, MaxBytes: 1 << 20})
	defer o.Close()
	recs, err := o.Pending(1000)
	if err != nil {
		t.Fatal(err)
	}
	if o.Stats().Torn == 0 || len(recs) == 0 || recs[len(recs)-1].Seq != 60 {
		t.Fatalf("torn %d, %d records", o.Stats().Torn, len(recs))
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].Seq <= recs[i-1].Seq || !bytes.Equal(recs[i].Payload, payloadFor(recs[i].Seq)) {
			t.Fatalf("order or content broken at %d", recs[i].Seq)
		}
	}
}

func TestEpochRules(t *testing.T) {
	// Unclean shutdown with SyncAlways keeps the epoch.
	dir := t.TempDir()
	o := mustOpen(t, dir, Options{})
	e1 := o.Epoch()
	appendN(t, o, 3) // no Close: simulated crash
	o2 := mustOpen(t, dir, Options{})
	if o2.Epoch() != e1 || o2.NextSeq() != 4 {
		t.Fatalf("SyncAlways crash: epoch %q->%q next %d", e1, o2.Epoch(), o2.NextSeq())
	}
	o2.Close()
	o.Close()
	// Unclean shutdown with SyncManual starts a new epoch; seq carries on.
	dir = t.TempDir()
	o = mustOpen(t, dir, Options{Sync: SyncManual})
	e1 = o.Epoch()
	appendN(t, o, 3)
	o2 = mustOpen(t, dir, Options{Sync: SyncManual})
	if o2.Epoch() == e1 || !o2.Stats().NewEpoch || o2.NextSeq() != 4 {
		t.Fatalf("SyncManual crash: epoch %q->%q next %d", e1, o2.Epoch(), o2.NextSeq())
	}
	recs, _ := o2.Pending(10)
	if len(recs) != 3 || recs[0].Epoch != e1 {
		t.Fatalf("old records must keep their epoch: %+v", recs)
	}
	o2.Close()
	o.Close()
	// A lost state file starts a new epoch.
	os.Remove(filepath.Join(dir, stateFile))
	o = mustOpen(t, dir, Options{})
	if o.Epoch() == e1 || !o.Stats().NewEpoch {
		t.Fatal("lost state kept the epoch")
	}
	o.Close()
	// So does a corrupt one.
	os.WriteFile(filepath.Join(dir, stateFile), []byte("{garbage"), 0o600)
	e2 := o.Epoch()
	o = mustOpen(t, dir, Options{})
	if o.Epoch() == e2 {
		t.Fatal("corrupt state kept the epoch")
	}
	o.Close()
}

func TestDeadLetter(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	o := mustOpen(t, dir, Options{Now: func() time.Time { return now }})
	defer o.Close()
	appendN(t, o, 2)
	o.Append([]byte{0xff, 0xfe})
	recs, _ := o.Pending(3)
	for _, r := range []Record{recs[0], recs[2]} {
		if err := o.DeadLetter(r, "payload_format_invalid"); err != nil {
			t.Fatal(err)
		}
	}
	o.Ack(1)
	if o.Stats().DeadLettered != 2 {
		t.Fatalf("stats %+v", o.Stats())
	}
	f, err := os.Open(filepath.Join(dir, deadLetterFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var lines []map[string]any
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 2 || lines[0]["seq"] != 1.0 || lines[0]["payload"] != string(payloadFor(1)) ||
		lines[1]["payload_b64"] != "//4=" || lines[0]["ts"] != "2026-03-01T12:00:00Z" {
		t.Fatalf("%v", lines)
	}
}

func TestConcurrentAppendAndDrain(t *testing.T) {
	dir := t.TempDir()
	o := mustOpen(t, dir, Options{SegmentSize: 4096, MaxBytes: 1 << 20, Sync: SyncManual})
	defer o.Close()
	const n = 2000
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := uint64(1); i <= n; i++ {
			if _, err := o.Append(payloadFor(i)); err != nil {
				t.Error(err)
				return
			}
		}
	})
	next := uint64(1)
	deadline := time.Now().Add(30 * time.Second)
	for next <= n && time.Now().Before(deadline) {
		recs, err := o.Pending(10)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Seq != next || !bytes.Equal(r.Payload, payloadFor(r.Seq)) {
				t.Fatalf("got seq %d want %d", r.Seq, next)
			}
			next++
		}
		if len(recs) > 0 {
			if err := o.Ack(recs[len(recs)-1].Seq); err != nil {
				t.Fatal(err)
			}
		} else {
			time.Sleep(time.Millisecond)
		}
	}
	wg.Wait()
	if next != n+1 {
		t.Fatalf("drained up to %d", next-1)
	}
}

// TestCrashChild is the child side of TestCrashKill: it appends forever
// and reports every seq that Append returned (so is on disk).
func TestCrashChild(t *testing.T) {
	dir := os.Getenv("LOADWATCH_OUTBOX_CHILD")
	if dir == "" {
		t.Skip("child process of TestCrashKill")
	}
	o, err := Open(dir, Options{SegmentSize: 8192})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	for {
		seq, err := o.Append(payloadFor(o.NextSeq()))
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("durable", seq)
	}
}

// TestCrashKill runs the test binary as a child that appends in a loop,
// kills it with SIGKILL after a few hundred durable appends (twice, so the
// second run resumes a killed outbox), and checks that every record the
// child reported durable is there, in order, with no seq reused.
func TestCrashKill(t *testing.T) {
	dir := t.TempDir()
	var durable uint64
	for round := range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "LOADWATCH_OUTBOX_CHILD="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		seen := 0
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 2 && f[0] == "durable" {
				n, _ := strconv.ParseUint(f[1], 10, 64)
				if n <= durable {
					cmd.Process.Kill()
					t.Fatalf("round %d: seq %d reused (durable %d)", round, n, durable)
				}
				durable = n
				if seen++; seen == 300 {
					cmd.Process.Kill()
					break
				}
			} else if len(f) > 0 && f[0] == "error" {
				t.Fatalf("child: %s", sc.Text())
			}
		}
		cmd.Wait()
		if seen < 300 {
			t.Fatalf("round %d: child reported only %d appends", round, seen)
		}
	}
	o := mustOpen(t, dir, Options{SegmentSize: 8192})
	defer o.Close()
	recs, err := o.Pending(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(recs)) < durable {
		t.Fatalf("%d records after the crash, %d were durable", len(recs), durable)
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) || !bytes.Equal(r.Payload, payloadFor(r.Seq)) {
			t.Fatalf("record %d: seq %d", i, r.Seq)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(appendRecord(nil, 7, "abcdef0123456789", []byte(`{"power":1}`)))
	f.Add(appendRecord(nil, 1, "", nil))
	f.Add([]byte{9, 0, 0, 0, 1, 2, 3, 4, 5})
	f.Fuzz(func(t *testing.T, b []byte) {
		seq, epoch, payload, n, err := decodeRecord(b)
		if err != nil {
			return
		}
		if n > len(b) {
			t.Fatalf("used %d of %d bytes", n, len(b))
		}
		if again := appendRecord(nil, seq, string(epoch), payload); !bytes.Equal(again, b[:n]) {
			t.Fatalf("re-encoding differs")
		}
	})
}

func benchAppend(b *testing.B, sync SyncPolicy) {
	o, err := Open(b.TempDir(), Options{Sync: sync})
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	p := bytes.Repeat([]byte("x"), 300) // about one telemetry payload
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		if _, err := o.Append(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendSyncAlways: one fsync per record (the default).
func BenchmarkAppendSyncAlways(b *testing.B) { benchAppend(b, SyncAlways) }

// BenchmarkAppendSyncManual: no fsync (the caller syncs periodically).
func BenchmarkAppendSyncManual(b *testing.B) { benchAppend(b, SyncManual) }
