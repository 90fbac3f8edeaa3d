package gctune

import (
	"context"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const MiB = 1 << 20
	for _, c := range []struct {
		name                        string
		base                        int
		floor, live, stacks, global uint64
		want                        int
	}{
		{"no stacks: base", 100, 0, 400 * MiB, 0, 0, 100},
		{"stacks halve it", 100, 0, 200 * MiB, 200 * MiB, 0, 50},
		{"10k devices", 100, 64 * MiB, 187 * MiB, 250 * MiB, 10 * MiB, 42}, // ceil(18700/447)
		{"floor wins for a small heap", 100, 64 * MiB, 20 * MiB, 40 * MiB, 4 * MiB, 100},
		{"floor below base", 100, 64 * MiB, 40 * MiB, 60 * MiB, 0, 64},
		{"base 400", 400, 0, 100 * MiB, 100 * MiB, 0, 200},
		{"base 50", 50, 0, 100 * MiB, 0, 0, 50},
		{"never below MinPercent", 100, 0, 1 * MiB, 1000 * MiB, 0, MinPercent},
		{"base below MinPercent kept", 5, 0, 1 * MiB, 1000 * MiB, 0, 5},
		{"GC off", -1, 0, 100, 100, 0, -1},
		{"nothing measured yet", 100, 64 * MiB, 0, 0, 0, 100},
		{"globals count like stacks", 100, 0, 300 * MiB, 0, 300 * MiB, 50},
		{"huge heap, no overflow", 100, 0, 1 << 50, 1 << 50, 0, 50},
	} {
		if got := Percent(c.base, c.floor, c.live, c.stacks, c.global); got != c.want {
			t.Errorf("%s: Percent(%d, %d, %d, %d, %d) = %d, want %d", c.name, c.base, c.floor, c.live, c.stacks, c.global, got, c.want)
		}
	}
}

// The percent gives the headroom asked for: goal - live = max(live x
// base/100, floor), up to one percent point of rounding.
func TestPercentHeadroom(t *testing.T) {
	for _, live := range []uint64{1 << 20, 50 << 20, 300 << 20, 5 << 30} {
		for _, stacks := range []uint64{0, 10 << 20, 400 << 20} {
			for _, base := range []int{50, 100, 200} {
				p := Percent(base, DefaultFloor, live, stacks, 0)
				head := (live + stacks) * uint64(p) / 100
				want := max(live*uint64(base)/100, DefaultFloor)
				if p == base || p == MinPercent {
					continue // clamped
				}
				if head < want || head > want+(live+stacks)/100 {
					t.Errorf("live %d stacks %d base %d: percent %d gives headroom %d, want %d", live, stacks, base, p, head, want)
				}
			}
		}
	}
}

// park holds n goroutines parked deep in their stacks (about 16 KB used
// each), as the broker's connection readers are between packets.
func park(n int) (release func()) {
	stop := make(chan struct{})
	var ready, done sync.WaitGroup
	var deep func(d int) byte
	deep = func(d int) byte {
		var pad [1024]byte
		if d == 0 {
			ready.Done()
			<-stop
			return pad[0]
		}
		pad[d%len(pad)] = byte(d)
		return deep(d-1) + pad[(d+1)%len(pad)]
	}
	ready.Add(n)
	done.Add(n)
	for range n {
		go func() { defer done.Done(); deep(16) }()
	}
	ready.Wait()
	return func() { close(stop); done.Wait() }
}

// With many parked deep stacks and a small live heap, the governor lowers
// GOGC below its base; when ctx ends it puts the base back.
func TestGovernorLowersPercentForStacks(t *testing.T) {
	release := park(2000)
	defer release()
	got := make(chan int, 100)
	g := &Governor{Floor: 1 << 20, Interval: 5 * time.Millisecond, set: func(p int) int { got <- p; return 0 }}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- g.Run(ctx) }()
	deadline := time.After(30 * time.Second)
	var first int
	for first == 0 {
		runtime.GC() // a finished cycle with the parked stacks scanned
		select {
		case first = <-got:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatal("the governor set no percent after collections")
		}
	}
	// The base is whatever GOGC the test runs with (100 unless set).
	base := readPercent()
	if first >= base || first < min(MinPercent, base) {
		t.Errorf("percent with 2000 deep stacks and a small heap: %d, want in [%d, %d)", first, MinPercent, base)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	last := first
	for len(got) > 0 {
		last = <-got
	}
	if last != base {
		t.Errorf("percent after Run ended: %d, want the base %d back", last, base)
	}
}

func readPercent() int {
	old := debugSet(-1)
	debugSet(old)
	return old
}

// Without parked stacks and a floor larger than the heap the governor
// leaves GOGC alone.
func TestGovernorLeavesSmallHeapsAlone(t *testing.T) {
	got := make(chan int, 100)
	g := &Governor{Floor: 1 << 40, Interval: 5 * time.Millisecond, set: func(p int) int { got <- p; return 0 }}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- g.Run(ctx) }()
	for range 5 {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	base := readPercent()
	for len(got) > 0 {
		if p := <-got; p != base {
			t.Errorf("set %d, want no change from %d", p, base)
		}
	}
}

// GOGC=off: the governor returns at once and changes nothing.
func TestGovernorOffWithGCOff(t *testing.T) {
	old := debugSet(-1)
	defer debugSet(old)
	called := false
	g := &Governor{set: func(int) int { called = true; return 0 }}
	done := make(chan error, 1)
	go func() { done <- g.Run(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return with the collector off")
	}
	if called {
		t.Error("the governor set a percent with the collector off")
	}
}

func BenchmarkPercent(b *testing.B) {
	for i := range b.N {
		Percent(100, DefaultFloor, uint64(i)<<20, 250<<20, 10<<20)
	}
}

var debugSet = debug.SetGCPercent
