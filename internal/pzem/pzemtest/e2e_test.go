package pzemtest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"loadwatch/internal/modbus"
	"loadwatch/internal/power"
	"loadwatch/internal/pzem"
	"loadwatch/internal/pzem/pzemtest"
	"loadwatch/internal/serialport"
)

type load power.Reading

func (l load) At(time.Time) power.Reading { return power.Reading(l) }

const vipf = power.FieldVoltage | power.FieldCurrent | power.FieldPower | power.FieldFrequency

// loads are three steady meters; want are their exact register readings.
var (
	loads = []load{
		{Voltage: 229.4, Current: 0.5, Power: 100, Frequency: 50, Has: vipf},
		{Voltage: 231.2, Current: 1.5, Power: 300, Frequency: 50.1, Has: vipf},
		{Voltage: 228.0, Current: 9.876, Power: 2000, Frequency: 49.9, Has: vipf},
	}
	initialEnergy = []power.WattHours{10, 20000, 9_999_000}
)

func startPTY(t *testing.T, bo pzemtest.BusOpts) (*pzemtest.Bus, *pzemtest.PTY) {
	t.Helper()
	var ms []*pzemtest.Meter
	for i, l := range loads {
		m, err := pzemtest.NewMeter(pzemtest.MeterOpts{Addr: uint8(i + 1), Source: l, Energy: initialEnergy[i]}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	bus, err := pzemtest.NewBus(bo, ms...)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pzemtest.ServePTY(t.Context(), bus)
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("virtual meter stopped with %v", err)
		}
	})
	return bus, p
}

func TestThreeMetersOnePTYWithFaults(t *testing.T) {
	const cycles = 40 // about 150 replies: every fault kind shows up (seeded), ~9 s
	faults := pzemtest.Faults{CRC: 0.05, Silence: 0.05, Slip: 0.05, Short: 0.05, Exception: 0.05}
	bus, p := startPTY(t, pzemtest.BusOpts{LatencyMin: time.Millisecond, LatencyMax: 3 * time.Millisecond, Faults: faults, Seed: 42})
	port, err := serialport.Open(p.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer port.Close()
	// Generous timeout: a late reply would be miscounted, and CI is slow.
	d, err := pzem.New(port, &pzem.Opts{Timeout: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	addrs := []uint8{1, 2, 3}
	lastEnergy := map[uint8]power.WattHours{}
	var ok, failed int
	for range cycles {
		for _, res := range d.ReadAll(ctx, addrs) {
			if res.Err != nil {
				failed++
				checkTyped(t, res.Err)
				continue
			}
			ok++
			checkReading(t, res.Addr, res.Reading, lastEnergy)
		}
	}
	c := bus.Counts()
	t.Logf("%d reads ok, %d failed with typed errors; bus: %+v", ok, failed, c)

	var sum pzem.Stats
	for _, s := range d.AllStats() {
		sum.Requests += s.Requests
		sum.Replies += s.Replies
		sum.CRCErrors += s.CRCErrors
		sum.Timeouts += s.Timeouts
		sum.ShortFrames += s.ShortFrames
		sum.Exceptions += s.Exceptions
		sum.Resyncs += s.Resyncs
		sum.Other += s.Other
	}
	t.Logf("driver: %+v", sum)
	if int(sum.Requests) != c.Requests || int(sum.CRCErrors) != c.CRC || int(sum.Timeouts) != c.Silence ||
		int(sum.ShortFrames) != c.Short || int(sum.Exceptions) != c.Exception || int(sum.Resyncs) != c.Slip || sum.Other != 0 ||
		int(sum.Replies) != c.Replies-c.CRC-c.Silence-c.Short-c.Exception {
		t.Fatalf("driver counters %+v do not match injected faults %+v", sum, c)
	}
	if c.CRC == 0 || c.Silence == 0 || c.Slip == 0 || c.Short == 0 || c.Exception == 0 {
		t.Fatalf("some fault kind never injected: %+v", c)
	}
	if ok < cycles*len(addrs)*8/10 {
		t.Fatalf("only %d of %d reads succeeded with retries", ok, cycles*len(addrs))
	}

	// The bus is in step again: with faults off, every first attempt works.
	if err := bus.SetFaults(pzemtest.Faults{}); err != nil {
		t.Fatal(err)
	}
	before := d.AllStats()
	for range 3 {
		for _, res := range d.ReadAll(ctx, addrs) {
			if res.Err != nil {
				t.Fatalf("after faults stopped, address %d: %v", res.Addr, res.Err)
			}
			checkReading(t, res.Addr, res.Reading, lastEnergy)
		}
	}
	for a, s := range d.AllStats() {
		if s.Retries != before[a].Retries || s.Resyncs != before[a].Resyncs {
			t.Fatalf("address %d needed retries or resyncs after faults stopped: %+v", a, s)
		}
	}
}

func checkTyped(t *testing.T, err error) {
	t.Helper()
	var nr *pzem.NoReplyError
	var le *pzem.LinkError
	var ex *modbus.ExceptionError
	switch {
	case errors.As(err, &nr):
	case errors.As(err, &le) && (errors.Is(err, modbus.ErrCRC) || errors.Is(err, modbus.ErrShortFrame) || errors.As(err, &ex)):
	default:
		t.Fatalf("untyped error %T: %v", err, err)
	}
}

func checkReading(t *testing.T, addr uint8, r power.Reading, last map[uint8]power.WattHours) {
	t.Helper()
	l := loads[addr-1]
	near := func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
	pf := float64(l.Power) / (float64(l.Voltage) * float64(l.Current))
	if !near(float64(r.Voltage), float64(l.Voltage)) || !near(float64(r.Current), float64(l.Current)) ||
		!near(float64(r.Power), float64(l.Power)) || !near(float64(r.Frequency), float64(l.Frequency)) ||
		!near(float64(r.PF), float64(int(pf*100+0.5))/100) || r.Has != power.AllMeterFields || r.Alarm {
		t.Fatalf("address %d read %+v, want the values of %+v", addr, r, l)
	}
	e0 := initialEnergy[addr-1]
	if r.Energy < e0 || r.Energy > e0+5 || r.Energy < last[addr] {
		t.Fatalf("address %d energy %v (start %v, last %v)", addr, r.Energy, e0, last[addr])
	}
	last[addr] = r.Energy
}

func TestLateClientSeesCleanFrames(t *testing.T) {
	_, p := startPTY(t, pzemtest.BusOpts{LatencyMin: time.Millisecond, LatencyMax: time.Millisecond})
	for i := range 3 { // open, read, close: each client starts clean
		port, err := serialport.Open(p.Path())
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		d, _ := pzem.New(port, &pzem.Opts{Retries: pzem.NoRetries, Timeout: time.Second})
		r, err := d.Read(t.Context(), 2)
		port.Close()
		if err != nil || r.Voltage != 231.2 {
			t.Fatalf("client %d: %+v, %v", i, r, err)
		}
	}
}

func TestStopServing(t *testing.T) {
	_, p := startPTY(t, pzemtest.BusOpts{})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("Close did not stop the server")
	}
}

func BenchmarkReadOverPTY(b *testing.B) {
	m, _ := pzemtest.NewMeter(pzemtest.MeterOpts{Source: loads[0]}, time.Now())
	bus, _ := pzemtest.NewBus(pzemtest.BusOpts{LatencyMin: time.Microsecond, LatencyMax: time.Microsecond}, m)
	p, err := pzemtest.ServePTY(context.Background(), bus)
	if err != nil {
		b.Skip(err)
	}
	defer p.Close()
	port, err := serialport.Open(p.Path())
	if err != nil {
		b.Fatal(err)
	}
	defer port.Close()
	d, _ := pzem.New(port, nil)
	for b.Loop() {
		if _, err := d.Read(b.Context(), 1); err != nil {
			b.Fatal(err)
		}
	}
}
