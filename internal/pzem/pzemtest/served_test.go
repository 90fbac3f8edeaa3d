package pzemtest_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"loadwatch/internal/power"
	"loadwatch/internal/pzem"
	"loadwatch/internal/pzem/pzemtest"
)

// sagging switches a 1.5 kW heater on at on behind 0.4 ohm of mains
// impedance: the voltage sags by about 2.6 V.
type sagging struct{ on time.Time }

func (s sagging) At(t time.Time) power.Reading {
	r := power.Reading{Voltage: 232, Frequency: 50, Has: vipf}
	if !t.Before(s.on) {
		i := 1500.0 / 232
		r.Current = power.Amperes(i)
		r.Voltage = power.Volts(232 - 0.4*i)
		r.Power = power.Watts(float64(r.Voltage) * i)
	}
	return r
}

// The driver polls a served meter every 200 ms (fake time, real default
// latency of 110-130 ms) while a load steps on.
func TestServedStepThroughDriver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		on := start.Add(10*time.Second + 400*time.Millisecond)
		src := sagging{on: on}
		m, err := pzemtest.NewMeter(pzemtest.MeterOpts{Source: src}, start)
		if err != nil {
			t.Fatal(err)
		}
		bus, _ := pzemtest.NewBus(pzemtest.BusOpts{Seed: 7}, m)
		cli, srv := pzemtest.Pipe()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); bus.Serve(ctx, srv) }()
		defer func() { cancel(); cli.Close(); <-done }()
		d, _ := pzem.New(cli, nil)

		final := src.At(on)
		var first, settled time.Duration = -1, -1
		var v0, e0 power.Reading
		for time.Now().Before(on.Add(6 * time.Second)) {
			r, err := d.Read(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			if r.Time.Before(on) {
				v0, e0 = r, r
				if r.Power != 0 {
					t.Fatalf("power %v before the load", r.Power)
				}
			}
			lag := r.Time.Sub(on)
			if lag > 0 && r.Power > 0 && first < 0 {
				first = lag
			}
			if lag > 0 && settled < 0 && float64(r.Power) == float64(int(float64(final.Power)*10+0.5))/10 {
				settled = lag
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("read every ~330 ms: first seen %v after switch-on, settled %v after", first, settled)
		if first <= 1200*time.Millisecond || settled < 2*time.Second || settled > 3600*time.Millisecond {
			t.Fatalf("first %v, settled %v: want > 1.2 s and about 2.5 s", first, settled)
		}
		r, _ := d.Read(ctx, 1)
		if sag := v0.Voltage - r.Voltage; sag < 2.4 || sag > 2.8 {
			t.Fatalf("voltage %v -> %v: sag %v, want about 2.6 V", v0.Voltage, r.Voltage, sag)
		}
		// Ten minutes on: 1.5 kW x 600 s = 250 Wh.
		time.Sleep(10 * time.Minute)
		r, _ = d.Read(ctx, 1)
		want := float64(final.Power) * r.Time.Sub(on).Hours()
		if got := float64(r.Energy - e0.Energy); got < want-2 || got > want+1 {
			t.Fatalf("energy advanced %v Wh, want about %.1f", got, want)
		}
	})
}
