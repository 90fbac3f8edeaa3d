package pzem_test

import (
	"context"
	"fmt"
	"time"

	"loadwatch/internal/power"
	"loadwatch/internal/pzem"
	"loadwatch/internal/pzem/pzemtest"
)

// Read a virtual meter over an in-memory line. With a real meter, pass the
// port from serialport.Open instead.
func ExampleDev_Read() {
	load := pzemtest.SourceFunc(func(time.Time) power.Reading {
		return power.Reading{Voltage: 229.5, Current: 4.35, Power: 950, Frequency: 50,
			Has: power.FieldVoltage | power.FieldCurrent | power.FieldPower | power.FieldFrequency}
	})
	m, _ := pzemtest.NewMeter(pzemtest.MeterOpts{Addr: 1, Source: load, Energy: 1234}, time.Now())
	bus, _ := pzemtest.NewBus(pzemtest.BusOpts{LatencyMin: time.Millisecond, LatencyMax: time.Millisecond}, m)
	cli, srv := pzemtest.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go bus.Serve(ctx, srv)
	defer cli.Close()

	d, _ := pzem.New(cli, nil)
	r, err := d.Read(ctx, 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.Voltage, r.Current, r.Power, r.Energy, r.Frequency, r.PF, r.Alarm)
	// Output: 229.5 V 4.350 A 950.0 W 1234 Wh 50.0 Hz 0.95 false
}
