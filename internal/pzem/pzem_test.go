package pzem_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"loadwatch/internal/modbus"
	"loadwatch/internal/power"
	"loadwatch/internal/pzem"
	"loadwatch/internal/pzem/pzemtest"
)

func TestParseMeasurementsDatasheetReply(t *testing.T) {
	// A reply as the meter sends it: 01 04 14, twenty data bytes, CRC.
	regs := []uint16{0x08FD, 0x1F40, 0x0000, 0x4650, 0x0000, 0x5678, 0x0012, 0x01F4, 0x0058, 0xFFFF}
	wire := modbus.Encode(modbus.ReadReply(1, modbus.FuncReadInput, regs))
	if len(wire) != 25 {
		t.Fatalf("reply is %d bytes, want 25", len(wire))
	}
	f, err := modbus.Decode(wire)
	if err != nil {
		t.Fatal(err)
	}
	got, err := modbus.ParseReadReply(f, pzem.NumInput)
	if err != nil {
		t.Fatal(err)
	}
	m, err := pzem.ParseMeasurements(got)
	if err != nil {
		t.Fatal(err)
	}
	r := m.Reading(time.Unix(0, 0))
	want := power.Reading{Time: time.Unix(0, 0), Voltage: 230.1, Current: 8, Power: 1800, Energy: 0x125678,
		Frequency: 50, PF: 0.88, Alarm: true, Has: power.AllMeterFields}
	if !same(r, want) {
		t.Fatalf("reading %+v, want %+v", r, want)
	}
	if _, err := pzem.ParseMeasurements(got[:9]); err == nil {
		t.Fatal("nine registers accepted")
	}
}

func same(a, b power.Reading) bool {
	d := func(x, y float64) bool { return x-y < 1e-9 && y-x < 1e-9 }
	return a.Time.Equal(b.Time) && d(float64(a.Voltage), float64(b.Voltage)) && d(float64(a.Current), float64(b.Current)) &&
		d(float64(a.Power), float64(b.Power)) && d(float64(a.Energy), float64(b.Energy)) &&
		d(float64(a.Frequency), float64(b.Frequency)) && d(float64(a.PF), float64(b.PF)) && a.Alarm == b.Alarm && a.Has == b.Has
}

func FuzzParseMeasurements(f *testing.F) {
	f.Add(uint16(2301), uint32(8000), uint32(18000), uint32(1234567), uint16(500), uint16(88), true)
	f.Fuzz(func(t *testing.T, v uint16, i, p, e uint32, fr, pf uint16, alarm bool) {
		m := pzem.Measurements{Voltage: v, Current: i, Power: p, Energy: e, Frequency: fr, PF: pf, Alarm: alarm}
		got, err := pzem.ParseMeasurements(m.Registers())
		if err != nil || got != m {
			t.Fatalf("round trip %+v -> %+v, %v", m, got, err)
		}
	})
}

// constant is a steady load.
type constant power.Reading

func (c constant) At(time.Time) power.Reading { return power.Reading(c) }

var steady = constant{Voltage: 230, Current: 2, Power: 414, Frequency: 50, Has: power.FieldVoltage | power.FieldCurrent | power.FieldPower | power.FieldFrequency}

// rig is a driver on an in-memory line with virtual meters; call inside a
// synctest bubble.
func rig(t *testing.T, bo pzemtest.BusOpts, po *pzem.Opts, addrs ...uint8) (*pzem.Dev, *pzemtest.Bus) {
	t.Helper()
	var ms []*pzemtest.Meter
	for _, a := range addrs {
		m, err := pzemtest.NewMeter(pzemtest.MeterOpts{Addr: a, Source: steady, Energy: 1000 * power.WattHours(a)}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	bus, err := pzemtest.NewBus(bo, ms...)
	if err != nil {
		t.Fatal(err)
	}
	cli, srv := pzemtest.Pipe()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); bus.Serve(ctx, srv) }()
	t.Cleanup(func() { cancel(); cli.Close(); <-done })
	d, err := pzem.New(cli, po)
	if err != nil {
		t.Fatal(err)
	}
	return d, bus
}

func TestReadAndWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, _ := rig(t, pzemtest.BusOpts{}, nil, 1, 2)
		ctx := t.Context()
		start := time.Now()
		r, err := d.Read(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el < pzemtest.DefaultLatencyMin || el > pzemtest.DefaultLatencyMax+10*time.Millisecond {
			t.Fatalf("read took %v of fake time, want the meter's 110-130 ms", el)
		}
		if r.Has != power.AllMeterFields || r.Voltage != 230 || r.Current != 2 || r.Power != 414 || r.Energy != 2000 || r.Frequency != 50 || r.PF != 0.9 || r.Alarm {
			t.Fatalf("reading %+v", r)
		}
		if err := d.SetAlarmThreshold(ctx, 2, 400); err != nil {
			t.Fatal(err)
		}
		if w, err := d.AlarmThreshold(ctx, 2); err != nil || w != 400 {
			t.Fatalf("threshold %v, %v", w, err)
		}
		if r, _ := d.Read(ctx, 2); !r.Alarm {
			t.Fatal("414 W above a 400 W threshold but no alarm")
		}
		if err := d.ResetEnergy(ctx, 1); err != nil {
			t.Fatal(err)
		}
		if r, _ := d.Read(ctx, 1); r.Energy != 0 {
			t.Fatalf("energy after reset %v", r.Energy)
		}
		if err := d.SetAddress(ctx, 2, 7); err != nil {
			t.Fatal(err)
		}
		if a, err := d.Address(ctx, 7); err != nil || a != 7 {
			t.Fatalf("address %d, %v", a, err)
		}
		found, err := d.Scan(ctx, 1, 10)
		if err != nil || len(found) != 2 || found[0] != 1 || found[1] != 7 {
			t.Fatalf("scan found %v, %v", found, err)
		}
		res := d.ReadAll(ctx, []uint8{1, 7, 9})
		if res[0].Err != nil || res[1].Err != nil || res[1].Reading.Energy != 2000 {
			t.Fatalf("ReadAll %+v", res)
		}
		var nr *pzem.NoReplyError
		if !errors.As(res[2].Err, &nr) || nr.Addr != 9 || !errors.Is(res[2].Err, modbus.ErrTimeout) {
			t.Fatalf("missing meter: %v", res[2].Err)
		}
		if !strings.Contains(res[2].Err.Error(), "no reply from address 9 (is the meter powered from AC?)") {
			t.Fatalf("message %q", res[2].Err)
		}
		// one probe from the scan, three attempts from ReadAll
		if s := d.Stats(9); s.Requests != 4 || s.Timeouts != 4 || s.Retries != 2 {
			t.Fatalf("stats of 9: %+v", s)
		}
		if s := d.Stats(1); s.Requests == 0 || s.Replies != s.Requests || s.LastLatency < pzemtest.DefaultLatencyMin {
			t.Fatalf("stats of 1: %+v", s)
		}
	})
}

func TestCalibrateOneMeter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, bus := rig(t, pzemtest.BusOpts{}, nil, 5)
		if err := d.Calibrate(t.Context()); err != nil {
			t.Fatal(err)
		}
		if n := bus.Meters()[0].Calibrations(); n != 1 {
			t.Fatalf("calibrations %d", n)
		}
		if a, err := d.Address(t.Context(), modbus.AddrGeneral); err != nil || a != 5 {
			t.Fatalf("address via 0xF8: %d, %v", a, err)
		}
	})
}

func TestBadArguments(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, _ := rig(t, pzemtest.BusOpts{}, nil, 1)
		ctx := t.Context()
		var ae *pzem.AddressError
		if _, err := d.Read(ctx, 0); !errors.As(err, &ae) {
			t.Fatalf("read 0: %v", err)
		}
		if _, err := d.Read(ctx, 248); !errors.As(err, &ae) || !strings.Contains(err.Error(), "address 248 out of range 1..247") {
			t.Fatalf("read 248: %v", err)
		}
		if err := d.SetAddress(ctx, 1, 0); !errors.As(err, &ae) {
			t.Fatalf("set address 0: %v", err)
		}
		if err := d.SetAlarmThreshold(ctx, 1, 70000); err == nil {
			t.Fatal("threshold 70000 W accepted")
		}
		if _, err := d.Scan(ctx, 9, 3); err == nil {
			t.Fatal("empty scan range accepted")
		}
		if s := d.Stats(1); s.Requests != 0 {
			t.Fatalf("bad arguments reached the bus: %+v", s)
		}
	})
}

func TestRetriesAndCounters(t *testing.T) {
	tests := []struct {
		name   string
		faults pzemtest.Faults
		check  func(s pzem.Stats, c pzemtest.FaultCounts) bool
		errIs  error
	}{
		{"crc", pzemtest.Faults{CRC: 1}, func(s pzem.Stats, c pzemtest.FaultCounts) bool { return s.CRCErrors == 3 && c.CRC == 3 }, modbus.ErrCRC},
		{"silence", pzemtest.Faults{Silence: 1}, func(s pzem.Stats, c pzemtest.FaultCounts) bool { return s.Timeouts == 3 && c.Silence == 3 }, modbus.ErrTimeout},
		{"short", pzemtest.Faults{Short: 1}, func(s pzem.Stats, c pzemtest.FaultCounts) bool { return s.ShortFrames == 3 && c.Short == 3 }, modbus.ErrShortFrame},
		{"slip", pzemtest.Faults{Slip: 1}, func(s pzem.Stats, c pzemtest.FaultCounts) bool {
			return s.Resyncs == 1 && s.Replies == 1 && c.Slip == 1
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				d, bus := rig(t, pzemtest.BusOpts{Faults: tt.faults, Seed: 1}, nil, 1)
				r, err := d.Read(t.Context(), 1)
				if !errors.Is(err, tt.errIs) {
					t.Fatalf("err %v, want %v", err, tt.errIs)
				}
				if err == nil && r.Voltage != 230 {
					t.Fatalf("reading %+v", r)
				}
				if s, c := d.Stats(1), bus.Counts(); !tt.check(s, c) {
					t.Fatalf("stats %+v, injected %+v", s, c)
				}
			})
		})
	}
	synctest.Test(t, func(t *testing.T) {
		d, _ := rig(t, pzemtest.BusOpts{Faults: pzemtest.Faults{Exception: 1}}, &pzem.Opts{Retries: pzem.NoRetries}, 1)
		_, err := d.Read(t.Context(), 1)
		var ex *modbus.ExceptionError
		if !errors.As(err, &ex) || ex.Code != modbus.SlaveDeviceFailure {
			t.Fatalf("exception: %v", err)
		}
		if s := d.Stats(1); s.Requests != 1 || s.Exceptions != 1 {
			t.Fatalf("stats %+v", s)
		}
	})
}

func TestNoAC(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ms []*pzemtest.Meter
		m, _ := pzemtest.NewMeter(pzemtest.MeterOpts{Addr: 3, Source: constant{}}, time.Now())
		ms = append(ms, m)
		bus, _ := pzemtest.NewBus(pzemtest.BusOpts{}, ms...)
		cli, srv := pzemtest.Pipe()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go bus.Serve(ctx, srv)
		defer cli.Close()
		d, _ := pzem.New(cli, nil)
		_, err := d.Read(ctx, 3)
		if err == nil || !strings.Contains(err.Error(), "no reply from address 3 (is the meter powered from AC?)") {
			t.Fatalf("no AC: %v", err)
		}
	})
}

func TestCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, _ := rig(t, pzemtest.BusOpts{Faults: pzemtest.Faults{Silence: 1}}, nil, 1)
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		if _, err := d.Read(ctx, 1); !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, modbus.ErrTimeout) {
			t.Fatalf("read with a 100 ms ctx: %v", err)
		}
	})
}

func BenchmarkReadInMemory(b *testing.B) {
	m, _ := pzemtest.NewMeter(pzemtest.MeterOpts{Source: steady}, time.Now())
	bus, _ := pzemtest.NewBus(pzemtest.BusOpts{LatencyMin: time.Microsecond, LatencyMax: time.Microsecond}, m)
	cli, srv := pzemtest.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go bus.Serve(ctx, srv)
	defer cli.Close()
	d, _ := pzem.New(cli, &pzem.Opts{Gap: time.Microsecond})
	for b.Loop() {
		if _, err := d.Read(ctx, 1); err != nil {
			b.Fatal(err)
		}
	}
}

func TestCancelledCycleSendsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, bus := rig(t, pzemtest.BusOpts{}, nil, 1, 2)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		for _, res := range d.ReadAll(ctx, []uint8{1, 2}) {
			if !errors.Is(res.Err, context.Canceled) {
				t.Fatalf("address %d: %v", res.Addr, res.Err)
			}
		}
		if _, err := d.AlarmThreshold(ctx, 1); !errors.Is(err, context.Canceled) {
			t.Fatalf("threshold: %v", err)
		}
		time.Sleep(time.Second)
		if c := bus.Counts(); c.Requests != 0 {
			t.Fatalf("a cancelled cycle sent %d requests", c.Requests)
		}
	})
}
