package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"loadwatch/internal/loadsim"
	"loadwatch/internal/pzem"
	"loadwatch/internal/pzem/pzemtest"
)

// simPzemCmd is `loadwatch sim pzem`: virtual PZEM-004T meters on a
// pseudo-terminal, measuring simulated circuits.
type simPzemCmd struct {
	PTY    bool `name:"pty" required:"" help:"Serve on a new pseudo-terminal and print its device path on the first line of output."`
	Addr   int  `default:"1" help:"Address of the first meter (1..247)."`
	Meters int  `default:"1" help:"Meters on the bus, at addresses addr, addr+1, ... (each measures its own circuit, seed+i)."`
	// The default schedule shows every appliance within 90 s.
	Schedule   string        `default:"0s:laptop; 20s:+solder; 45s:printer; 60s:3d_printer; 80s:nothing; repeat=90s" help:"Load schedule (loadsim syntax, e.g. '0s:laptop; 30s:+solder; repeat=1m'), or 'reference' for the reference hour."`
	Seed       int64         `default:"1" help:"Seed of the circuits, latency jitter and faults."`
	Faults     string        `help:"Fault rates per reply, e.g. 'crc=0.05,silence=0.01,slip=0.02,short=0.01,exception=0.01' or 'all=0.02'."`
	LatencyMin time.Duration `default:"110ms" help:"Shortest reply delay (the real meter: about 110 ms)."`
	LatencyMax time.Duration `default:"130ms" help:"Longest reply delay (the real meter: about 130 ms)."`

	out, log io.Writer // standard output and error when nil (tests set them)
}

// Run serves until ctx is done.
func (c *simPzemCmd) Run(ctx context.Context) error {
	if !c.PTY {
		return errors.New("sim pzem: only --pty is supported")
	}
	if c.Meters < 1 || c.Addr+c.Meters-1 > 247 {
		return fmt.Errorf("sim pzem: --meters %d from --addr %d runs past address 247", c.Meters, c.Addr)
	}
	if err := pzem.CheckAddress(c.Addr); err != nil {
		return err
	}
	faults, err := pzemtest.ParseFaults(c.Faults)
	if err != nil {
		return err
	}
	var sched loadsim.Schedule
	if strings.TrimSpace(c.Schedule) == "reference" {
		sched = loadsim.ReferenceSchedule()
	} else if sched, err = loadsim.ParseSchedule(c.Schedule); err != nil {
		return fmt.Errorf("sim pzem: --schedule: %w", err)
	}
	start := time.Now()
	meters := make([]*pzemtest.Meter, 0, c.Meters)
	circuits := make([]*loadsim.Circuit, 0, c.Meters)
	for i := range c.Meters {
		circ := loadsim.NewCircuit(loadsim.Config{Seed: c.Seed + int64(i), Start: start, Schedule: sched})
		m, err := pzemtest.NewMeter(pzemtest.MeterOpts{Addr: uint8(c.Addr + i), Source: circ}, start)
		if err != nil {
			return err
		}
		meters, circuits = append(meters, m), append(circuits, circ)
	}
	bus, err := pzemtest.NewBus(pzemtest.BusOpts{LatencyMin: c.LatencyMin, LatencyMax: c.LatencyMax, Faults: faults, Seed: uint64(c.Seed)}, meters...)
	if err != nil {
		return err
	}
	p, err := pzemtest.ServePTY(ctx, bus)
	if err != nil {
		return err
	}
	out, log := c.out, c.log
	if out == nil {
		out = os.Stdout
	}
	if log == nil {
		log = os.Stderr
	}
	if _, err := fmt.Fprintln(out, p.Path()); err != nil {
		p.Close()
		return err
	}
	fmt.Fprintf(log, "sim pzem: %d meter(s) at address %d..%d on %s; stop with Ctrl-C\n", c.Meters, c.Addr, c.Addr+c.Meters-1, p.Path())
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			err := p.Close()
			fmt.Fprintf(log, "sim pzem: stopped; served %+v\n", bus.Counts())
			return err
		case now := <-tick.C:
			fmt.Fprintf(log, "sim pzem: %s: %s\n", now.Sub(start).Round(time.Second), circuits[0].Label(now))
		}
	}
}
