package pzem_test

import (
	"os"
	"strconv"
	"testing"

	"loadwatch/internal/pzem"
	"loadwatch/internal/serialport"
)

// TestRealMeter checks a real PZEM-004T when LOADWATCH_PZEM_PORT names its
// serial port (LOADWATCH_PZEM_ADDR, default 1, its address). It only reads.
func TestRealMeter(t *testing.T) {
	path := os.Getenv("LOADWATCH_PZEM_PORT")
	if path == "" {
		t.Skip("set LOADWATCH_PZEM_PORT=/dev/ttyUSB0 to test a real meter")
	}
	addr := 1
	if s := os.Getenv("LOADWATCH_PZEM_ADDR"); s != "" {
		var err error
		if addr, err = strconv.Atoi(s); err != nil || pzem.CheckAddress(addr) != nil {
			t.Fatalf("LOADWATCH_PZEM_ADDR=%q", s)
		}
	}
	p, err := serialport.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	d, _ := pzem.New(p, nil)
	for range 3 {
		r, err := d.Read(t.Context(), uint8(addr))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%v %v %v %v %v pf %v alarm %v", r.Voltage, r.Current, r.Power, r.Energy, r.Frequency, r.PF, r.Alarm)
		if r.Voltage < 80 || r.Voltage > 260 || r.Frequency < 45 || r.Frequency > 65 || r.PF < 0 || r.PF > 1 {
			t.Fatalf("implausible reading %+v", r)
		}
	}
	w, err := d.AlarmThreshold(t.Context(), uint8(addr))
	if err != nil {
		t.Fatal(err)
	}
	a, err := d.Address(t.Context(), uint8(addr))
	if err != nil || int(a) != addr {
		t.Fatalf("address register %d, %v", a, err)
	}
	t.Logf("alarm threshold %v, stats %+v", w, d.Stats(uint8(addr)))
}
