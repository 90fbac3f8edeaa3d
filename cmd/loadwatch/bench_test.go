package main

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestMain lets the bench smoke tests run this test binary as the child
// `loadwatch serve`: with LOADWATCH_BENCH_MAIN set it runs main() on its
// arguments instead of the tests.
func TestMain(m *testing.M) {
	if os.Getenv("LOADWATCH_BENCH_MAIN") != "" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func benchSmokeFlags(t *testing.T) benchCommon {
	t.Setenv("LOADWATCH_BENCH_MAIN", "1") // the child server is this binary running main()
	return benchCommon{Devices: 10, Interval: 50 * time.Millisecond, Batch: 1, Window: 16, Seed: 1, Prefix: "smoke",
		NoModel: true, Drain: time.Minute, JSON: true, Quiet: true}
}

func TestBenchFleetCommandSmoke(t *testing.T) {
	c := benchFleetCmd{benchCommon: benchSmokeFlags(t), RampStep: time.Second, RampFactor: 1.5, MaxP99: 100 * time.Millisecond}
	c.Duration = 2 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.Run(ctx); err != nil { // an error also when a reading was lost
		t.Fatal(err)
	}
}

func TestBenchChaosCommandSmoke(t *testing.T) {
	c := benchChaosCmd{benchCommon: benchSmokeFlags(t), HostileRate: 20, Down: 300 * time.Millisecond, CrashAgents: 1}
	c.Duration = 5 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := c.Run(ctx); err != nil { // lost readings, unexpected answers or a crash fail it
		t.Fatal(err)
	}
}

func TestBenchFlagsRefused(t *testing.T) {
	for _, c := range []benchCommon{
		{Devices: 0, Interval: time.Second, Duration: time.Second, Batch: 1},
		{Devices: 1, Interval: time.Second, Duration: time.Second, Batch: 65},
		{Devices: 1, Interval: 0, Duration: time.Second, Batch: 1},
	} {
		if _, err := c.options(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
