package pzemtest

import (
	"bytes"
	"context"
	"testing"
	"testing/synctest"
	"time"

	"loadwatch/internal/modbus"
)

// serveBytes writes in to a served bus in one chunk and returns what the
// bus wrote back within a second of fake time.
func serveBytes(t *testing.T, in []byte) []byte {
	var out []byte
	synctest.Test(t, func(t *testing.T) {
		m, _ := NewMeter(MeterOpts{Source: fixed{Voltage: 230, Current: 1, Power: 200, Frequency: 50, Has: vif}}, time.Now())
		bus, _ := NewBus(BusOpts{LatencyMin: time.Millisecond, LatencyMax: time.Millisecond}, m)
		cli, srv := Pipe()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); bus.Serve(ctx, srv) }()
		if _, err := cli.Write(in); err != nil {
			t.Fatal(err)
		}
		cli.SetReadTimeout(10 * time.Millisecond)
		deadline := time.Now().Add(time.Second)
		buf := make([]byte, 256)
		for time.Now().Before(deadline) {
			n, _ := cli.Read(buf)
			out = append(out, buf[:n]...)
		}
		cancel()
		cli.Close()
		<-done
	})
	return out
}

func TestServeResyncsOnGarbage(t *testing.T) {
	req := modbus.Encode(modbus.ReadRequest(1, modbus.FuncReadInput, 0, 10))
	m, _ := NewMeter(MeterOpts{Source: fixed{Voltage: 230, Current: 1, Power: 200, Frequency: 50, Has: vif}}, time.Now())
	want, _ := m.Handle(modbus.ReadRequest(1, modbus.FuncReadInput, 0, 10), time.Now())
	tests := []struct {
		name string
		in   []byte
	}{
		{"clean", req},
		{"stray zero", append([]byte{0}, req...)},
		{"unknown function bytes", append([]byte{0x01, 0x10, 0x33}, req...)},
		{"truncated request", append(append([]byte(nil), req[:5]...), req...)},
		{"bad CRC request first", append(append(append([]byte(nil), req[:6]...), 0, 0), req...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := serveBytes(t, tt.in)
			if !bytes.Equal(got, modbus.Encode(want)) {
				t.Fatalf("reply % X, want % X", got, modbus.Encode(want))
			}
		})
	}
}

// Whatever arrives, the bus only ever writes well-formed frames.
func FuzzServe(f *testing.F) {
	f.Add(modbus.Encode(modbus.ReadRequest(1, 4, 0, 10)))
	f.Add([]byte{0x01, 0x10, 0x33, 0x01, 0x42, 0x80, 0x11})
	f.Add([]byte{0xF8, 0x41, 0x37, 0x21, 0xB7, 0x78})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 || len(in) > 300 {
			return
		}
		out := serveBytes(t, in)
		for len(out) > 0 {
			n := modbus.ReplyLen(out)
			if n == 0 || n > len(out) {
				t.Fatalf("bus wrote a malformed reply: % X", out)
			}
			if _, err := modbus.Decode(out[:n]); err != nil {
				t.Fatal(err)
			}
			out = out[n:]
		}
	})
}
