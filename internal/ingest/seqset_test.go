package ingest

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func TestSeqSet(t *testing.T) {
	s := newSeqSet(128)
	if s.window != 128 {
		t.Fatalf("window %d, want 128", s.window)
	}
	if s.has("a", 1) {
		t.Fatal("an empty set has a reading")
	}
	for seq := uint64(1); seq <= 300; seq++ {
		s.add("a", seq)
	}
	for _, c := range []struct {
		epoch string
		seq   uint64
		want  bool
	}{
		{"a", 300, true},
		{"a", 173, true},  // the oldest in the window (300-127)
		{"a", 172, false}, // just past it: forgotten
		{"a", 1, false},
		{"a", 301, false}, // not seen yet
		{"b", 300, false}, // another epoch
	} {
		if got := s.has(c.epoch, c.seq); got != c.want {
			t.Errorf("has(%q, %d) = %v, want %v", c.epoch, c.seq, got, c.want)
		}
	}
	// A gap: what the window moved past is forgotten, not mistaken for
	// the seqs that now share its bits.
	s.add("a", 350)
	for seq := uint64(301); seq < 350; seq++ {
		if s.has("a", seq) {
			t.Fatalf("seq %d reported seen after a gap", seq)
		}
	}
	if !s.has("a", 300) || !s.has("a", 350) || s.has("a", 222) {
		t.Fatal("window after a gap of 50")
	}
	// Out of order inside the window.
	s.add("a", 320)
	if !s.has("a", 320) || s.has("a", 321) {
		t.Fatal("a late seq inside the window")
	}
	// A jump past the whole window forgets everything before it.
	s.add("a", 10_000)
	if s.has("a", 350) || !s.has("a", 10_000) {
		t.Fatal("jump past the window")
	}
	// Too old to remember: not added.
	s.add("a", 5)
	if s.has("a", 5) {
		t.Fatal("a seq older than the window was remembered")
	}
}

func TestSeqSetEpochs(t *testing.T) {
	s := newSeqSet(64)
	for i, e := range []string{"e1", "e2", "e3", "e4"} {
		s.add(e, uint64(i+1))
	}
	s.add("e1", 10) // e1 is now the most recently used; e2 the least
	s.add("e5", 1)
	if s.has("e2", 2) {
		t.Error("the least recently used epoch was kept past maxEpochs")
	}
	for _, c := range []struct {
		e   string
		seq uint64
	}{{"e1", 1}, {"e1", 10}, {"e3", 3}, {"e4", 4}, {"e5", 1}} {
		if !s.has(c.e, c.seq) {
			t.Errorf("has(%q, %d) = false after eviction of another epoch", c.e, c.seq)
		}
	}
	// The epoch string is copied: the caller's buffer may be reused.
	buf := []byte("epochX")
	s.add(string(buf[:]), 7) // a fresh string: the set must keep its own copy anyway
	if !s.has(strings.Clone("epochX"), 7) {
		t.Error("epoch not found by value")
	}
}

// Against an exact model: every seq within the window of the highest seen
// is reported exactly; older ones are reported not seen.
func TestSeqSetModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const window = 256
	s := newSeqSet(window)
	seen := map[uint64]bool{}
	var hi uint64
	for range 20_000 {
		var seq uint64
		switch r.IntN(10) {
		case 0: // a replay or late reading
			seq = hi - uint64(r.IntN(400))
			if seq > hi {
				seq = 0
			}
		case 1: // a gap
			seq = hi + uint64(r.IntN(300))
		default:
			seq = hi + 1
		}
		if seq == 0 {
			continue
		}
		want := seen[seq] && hi-seq < window
		if seq > hi {
			want = false
		}
		if got := s.has("e", seq); got != want {
			t.Fatalf("has(%d) = %v, want %v (hi %d)", seq, got, want, hi)
		}
		s.add("e", seq)
		if hi-seq < window || seq > hi {
			seen[seq] = true
		}
		hi = max(hi, seq)
	}
}

func BenchmarkSeqSet(b *testing.B) {
	s := newSeqSet(8192)
	var seq uint64
	for b.Loop() {
		seq++
		if !s.has("epoch", seq) {
			s.add("epoch", seq)
		}
	}
}
