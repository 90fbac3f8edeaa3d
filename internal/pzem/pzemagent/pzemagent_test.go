package pzemagent

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"loadwatch/internal/agent"
	"loadwatch/internal/power"
	"loadwatch/internal/pzem"
	"loadwatch/internal/pzem/pzemtest"
	"loadwatch/internal/telemetry"
)

// The adapter keeps the driver's abilities and adds the link counters.
var (
	_ agent.Sensor         = Sensor{}
	_ agent.LinkReporter   = Sensor{}
	_ agent.EnergyResetter = Sensor{}
	_ agent.AlarmSetter    = Sensor{}
)

type steady struct{}

func (steady) At(time.Time) power.Reading {
	return power.Reading{Voltage: 230, Current: 0.2, Power: 40, Frequency: 50, PF: 0.87, Has: power.AllMeterFields}
}

// TestLinkStatsOverAFaultyBus reads a virtual meter through a bus that
// corrupts, drops and shifts replies: the counters the agent gets are the
// driver's, every fault kind shows, and they pass the wire validation.
func TestLinkStatsOverAFaultyBus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, err := pzemtest.NewMeter(pzemtest.MeterOpts{Addr: 1, Source: steady{}}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		bus, err := pzemtest.NewBus(pzemtest.BusOpts{Seed: 3, Faults: pzemtest.Faults{CRC: 0.15, Silence: 0.1, Slip: 0.1}}, m)
		if err != nil {
			t.Fatal(err)
		}
		cli, srv := pzemtest.Pipe()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); bus.Serve(ctx, srv) }()
		defer func() { cancel(); cli.Close(); <-done }()
		d, err := pzem.New(cli, nil)
		if err != nil {
			t.Fatal(err)
		}
		s := Sensor{d}
		for range 40 {
			s.Read(ctx, 1) // failures are what this test counts
		}
		got := s.LinkStats()
		c, ok := got[1]
		if !ok || len(got) != 1 {
			t.Fatalf("link stats %+v", got)
		}
		if c != Counters(d.Stats(1)) {
			t.Fatalf("adapter %+v, driver %+v", c, d.Stats(1))
		}
		if c.CRCErrors == 0 || c.Timeouts == 0 || c.Resyncs == 0 || c.Replies == 0 || c.LastLatency == 0 {
			t.Fatalf("counters %+v: want CRC errors, timeouts, resyncs and replies", c)
		}
		if c.Requests != c.Replies+c.CRCErrors+c.Timeouts+c.ShortFrames+c.Exceptions+c.Other {
			t.Fatalf("counters %+v do not add up", c)
		}
		st := telemetry.Status{State: telemetry.StatusOnline, Link: got}
		back, err := telemetry.DecodeStatus(st.AppendJSON(nil), time.Time{}, telemetry.Limits{})
		if err != nil || back.Link[1].Timeouts != c.Timeouts {
			t.Fatalf("wire: %+v %v", back.Link, err)
		}
	})
}
