package ledger

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"loadwatch/internal/power"
)

func TestObserveTable(t *testing.T) {
	type step struct {
		c     power.WattHours
		mark  bool
		total power.WattHours
		jump  Jump
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"forward", []step{{100, false, 100, JumpFirst}, {150, false, 150, JumpForward}, {150, false, 150, JumpForward}, {151, false, 151, JumpForward}}},
		{"reset to zero", []step{{5000, false, 5000, JumpFirst}, {5100, false, 5100, JumpForward}, {0, false, 5100, JumpReset}, {30, false, 5130, JumpForward}}},
		{"power-loss reset mid range", []step{{5000, false, 5000, JumpFirst}, {12, false, 5012, JumpReset}}},
		{"wrap", []step{{9_999_950, false, 9_999_950, JumpFirst}, {9_999_999, false, 9_999_999, JumpForward}, {40, false, 10_000_040, JumpWrap}, {41, false, 10_000_041, JumpForward}}},
		{"wrap from 9999.99 kWh", []step{{9_999_990, false, 9_999_990, JumpFirst}, {3, false, 10_000_003, JumpWrap}}},
		{"announced reset near top", []step{{9_999_000, false, 9_999_000, JumpFirst}, {0, true, 9_999_000, JumpReset}, {7, false, 9_999_007, JumpForward}}},
		{"unannounced reset near top is taken for a wrap", []step{{9_999_000, false, 9_999_000, JumpFirst}, {0, false, 10_000_000, JumpWrap}}},
		{"far backwards near top is a reset", []step{{9_999_000, false, 9_999_000, JumpFirst}, {500_000, false, 10_499_000, JumpReset}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := New(Config{}, State{})
			for i, s := range c.steps {
				if s.mark {
					l.MarkReset()
				}
				total, j, err := l.Observe(s.c)
				if err != nil || total != s.total || j != s.jump {
					t.Fatalf("step %d (%v): total %v jump %v err %v; want %v %v", i, s.c, total, j, err, s.total, s.jump)
				}
			}
		})
	}
}

func TestBadCounter(t *testing.T) {
	l := New(Config{}, State{})
	l.Observe(10)
	for _, c := range []power.WattHours{-1, power.WattHours(math.NaN()), power.WattHours(math.Inf(1)), DefaultModulus} {
		if _, _, err := l.Observe(c); !errors.Is(err, ErrBadCounter) {
			t.Errorf("%v: err %v", c, err)
		}
	}
	if l.Total() != 10 || l.State().Last != 10 {
		t.Errorf("state changed: %+v", l.State())
	}
}

// TestRestart: the state survives a JSON round trip and a reset that
// happened while the agent was down is detected on the first reading.
func TestRestart(t *testing.T) {
	l := New(Config{}, State{})
	l.Observe(1000)
	l.Observe(1500)
	b, err := json.Marshal(l.State())
	if err != nil {
		t.Fatal(err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	l2 := New(Config{}, st)
	if total, j, _ := l2.Observe(1600); total != 1600 || j != JumpForward {
		t.Fatalf("after restart: %v %v", total, j)
	}
	l3 := New(Config{}, st)
	if total, j, _ := l3.Observe(20); total != 1520 || j != JumpReset {
		t.Fatalf("reset while down: %v %v", total, j)
	}
}

// TestPropertyExact: for random consumption with random announced resets
// and wraps, observed at every step, the total is exactly the energy
// consumed and never decreases. Integers in Wh keep the sums exact.
func TestPropertyExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for run := range 200 {
		mod := power.WattHours(10_000_000)
		counter := power.WattHours(rng.IntN(int(mod)))
		l := New(Config{}, State{})
		truth := counter
		if total, _, _ := l.Observe(counter); total != truth {
			t.Fatalf("run %d: first", run)
		}
		prev := truth
		for step := range 500 {
			if rng.IntN(50) == 0 {
				counter = 0
				l.MarkReset()
			} else {
				d := power.WattHours(rng.IntN(20_000)) // up to 20 kWh per step
				truth += d
				counter += d
				if counter >= mod {
					counter -= mod
				}
			}
			total, _, err := l.Observe(counter)
			if err != nil {
				t.Fatal(err)
			}
			if total < prev {
				t.Fatalf("run %d step %d: total went back %v -> %v", run, step, prev, total)
			}
			if total != truth {
				t.Fatalf("run %d step %d: total %v want %v (state %+v)", run, step, total, truth, l.State())
			}
			prev = total
		}
	}
}

// TestPropertyMonotonic: whatever the counter does (any in-range value),
// the total never decreases.
func TestPropertyMonotonic(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	l := New(Config{Modulus: 1000, WrapWindow: 100}, State{})
	prev := power.WattHours(0)
	for range 100000 {
		total, _, err := l.Observe(power.WattHours(rng.IntN(1000)))
		if err != nil {
			t.Fatal(err)
		}
		if total < prev {
			t.Fatalf("total went back %v -> %v", prev, total)
		}
		prev = total
	}
}

func BenchmarkObserve(b *testing.B) {
	l := New(Config{}, State{})
	c := power.WattHours(0)
	for b.Loop() {
		c++
		if c >= DefaultModulus {
			c = 0
		}
		l.Observe(c)
	}
}
