package relay

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

func TestSimFollowsAndRecords(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tick := base
	var seen []bool
	s := NewSim(true, func() time.Time { tick = tick.Add(time.Second); return tick }, func(c bool, _ time.Time) { seen = append(seen, c) })
	ctx := context.Background()
	for _, c := range []bool{false, false, true} {
		if err := s.Set(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if !s.Closed() {
		t.Fatal("relay should be closed after the last Set(true)")
	}
	ch := s.Changes()
	if len(ch) != 2 || ch[0].Closed || !ch[1].Closed || !ch[1].Time.After(ch[0].Time) {
		t.Fatalf("changes = %+v, want open then closed (a repeated open is no change)", ch)
	}
	if len(seen) != 2 || seen[0] || !seen[1] {
		t.Fatalf("OnChange saw %v", seen)
	}
}

func TestOpenGPIOErrors(t *testing.T) {
	if _, err := OpenGPIO(GPIOOpts{Line: -1}); err == nil {
		t.Fatal("negative line accepted")
	}
	if _, err := OpenGPIO(GPIOOpts{Chip: "/nonexistent/gpiochip-loadwatch", Line: 0}); err == nil {
		t.Fatal("missing chip accepted")
	}
}

// TestGPIOHardware drives a real line when LOADWATCH_GPIO_CHIP and
// LOADWATCH_GPIO_LINE name a free one (e.g. gpio-sim); skipped otherwise.
func TestGPIOHardware(t *testing.T) {
	chip := os.Getenv("LOADWATCH_GPIO_CHIP")
	if chip == "" {
		t.Skip("set LOADWATCH_GPIO_CHIP and LOADWATCH_GPIO_LINE to drive a real line")
	}
	var line int
	if _, err := fmt.Sscan(os.Getenv("LOADWATCH_GPIO_LINE"), &line); err != nil {
		t.Fatal(err)
	}
	g, err := OpenGPIO(GPIOOpts{Chip: chip, Line: line, ActiveLow: true, Closed: true})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Set(context.Background(), false); err != nil || g.Closed() {
		t.Fatalf("Set(false): %v closed=%v", err, g.Closed())
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := g.Set(context.Background(), true); err != ErrClosed {
		t.Fatalf("Set after Close = %v", err)
	}
}
