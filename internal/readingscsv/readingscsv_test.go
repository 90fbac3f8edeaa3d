package readingscsv

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"loadwatch/internal/power"
)

const hdr = "timestamp,device,voltage,current,power,energy,frequency,pf,label\n"

func TestReadRows(t *testing.T) {
	in := hdr +
		"2023-02-16T12:08:26.215Z,ompm-main,244.5,0.11,27.4,,50.0,1.0,fan\n" +
		"2023-02-16T12:08:27.193Z,ompm-main,,,0,,,,nothing\n" +
		"2023-02-16T12:08:27.000Z,other,230,1,200,12.5,49.9,0.87,\n"
	rows, err := ReadAll(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("got %d rows", len(rows))
	}
	r0 := rows[0]
	want0 := power.Reading{
		Time:    time.Date(2023, 2, 16, 12, 8, 26, 215e6, time.UTC),
		Voltage: 244.5, Current: 0.11, Power: 27.4, Frequency: 50, PF: 1,
		Has: power.FieldVoltage | power.FieldCurrent | power.FieldPower | power.FieldFrequency | power.FieldPF,
	}
	if r0.Reading != want0 || r0.Device != "ompm-main" || r0.Label != "fan" || r0.Line != 2 {
		t.Errorf("row 0 = %+v, want %+v", r0, want0)
	}
	if rows[1].Reading.Has != power.FieldPower || rows[1].Label != "nothing" || rows[1].Line != 3 {
		t.Errorf("row 1 = %+v", rows[1])
	}
	if rows[2].Reading.Has != power.FieldVoltage|power.FieldCurrent|power.FieldPower|power.FieldEnergy|power.FieldFrequency|power.FieldPF || rows[2].Reading.Energy != 12.5 || rows[2].Label != "" {
		t.Errorf("row 2 = %+v", rows[2])
	}
}

func TestHeaderVariants(t *testing.T) {
	// Reordered columns, an extra column, no label, a BOM and CRLF ends.
	in := "\ufeffextra,power,device,timestamp\r\nx,5.5,d1,2024-01-01T00:00:00Z\r\ny,6,d1,2024-01-01T00:00:01.5Z\r\n"
	rd, err := NewReader(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if rd.HasLabel() {
		t.Error("HasLabel = true without a label column")
	}
	r, err := rd.Read()
	if err != nil {
		t.Fatal(err)
	}
	if r.Reading.Power != 5.5 || r.Reading.Has != power.FieldPower || r.Device != "d1" {
		t.Errorf("row = %+v", r)
	}
	if got := rd.Record()[0]; got != "x" {
		t.Errorf("Record()[0] = %q", got)
	}
	r, err = rd.Read()
	if err != nil {
		t.Fatal(err)
	}
	if r.Reading.Time.Nanosecond() != 5e8 {
		t.Errorf("time = %v", r.Reading.Time)
	}
	if _, err := rd.Read(); !errors.Is(err, io.EOF) {
		t.Errorf("end: %v", err)
	}
}

func TestBadHeader(t *testing.T) {
	for _, in := range []string{
		"",
		"timestamp,device\n",
		"timestamp,power\n",
		"device,power\n",
		"timestamp,device,power,power\n",
	} {
		_, err := NewReader(strings.NewReader(in))
		var pe *ParseError
		if !errors.Is(err, ErrHeader) || !errors.As(err, &pe) || pe.Line != 1 {
			t.Errorf("%q: err = %v", in, err)
		}
	}
}

func TestBadRows(t *testing.T) {
	good := "2024-01-01T00:00:00.000Z,d,230,1,100,1,50,0.5,x\n"
	cases := []struct {
		name, row, col string
		want           error
	}{
		{"bad number", "2024-01-01T00:00:01.000Z,d,abc,1,100,1,50,0.5,x\n", "voltage", ErrBadNumber},
		{"nan", "2024-01-01T00:00:01.000Z,d,230,NaN,100,1,50,0.5,x\n", "current", ErrNotFinite},
		{"inf", "2024-01-01T00:00:01.000Z,d,230,1,+Inf,1,50,0.5,x\n", "power", ErrNotFinite},
		{"negative power", "2024-01-01T00:00:01.000Z,d,230,1,-1,1,50,0.5,x\n", "power", ErrNegative},
		{"negative energy", "2024-01-01T00:00:01.000Z,d,230,1,1,-3,50,0.5,x\n", "energy", ErrNegative},
		{"pf above 1", "2024-01-01T00:00:01.000Z,d,230,1,100,1,50,1.01,x\n", "pf", ErrPFRange},
		{"empty power", "2024-01-01T00:00:01.000Z,d,230,1,,1,50,0.5,x\n", "power", ErrMissingField},
		{"empty device", "2024-01-01T00:00:01.000Z,,230,1,1,1,50,0.5,x\n", "device", ErrMissingField},
		{"bad timestamp", "2024-01-01 00:00:01,d,230,1,100,1,50,0.5,x\n", "timestamp", ErrBadTimestamp},
		{"empty timestamp", ",d,230,1,100,1,50,0.5,x\n", "timestamp", ErrMissingField},
		{"same time", "2024-01-01T00:00:00.000Z,d,230,1,100,1,50,0.5,x\n", "timestamp", ErrTimeOrder},
		{"going back", "2023-12-31T23:59:59.000Z,d,230,1,100,1,50,0.5,x\n", "timestamp", ErrTimeOrder},
		{"field count", "2024-01-01T00:00:01.000Z,d,230\n", "", ErrFieldCount},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rd, err := NewReader(strings.NewReader(hdr + good + c.row))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := rd.Read(); err != nil {
				t.Fatal(err)
			}
			_, err = rd.Read()
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a *ParseError", err)
			}
			if !errors.Is(err, c.want) || pe.Line != 3 || pe.Column != c.col {
				t.Errorf("err = %v (line %d, column %q), want %v at line 3 column %q", err, pe.Line, pe.Column, c.want, c.col)
			}
			if !strings.Contains(err.Error(), "line 3") {
				t.Errorf("message %q lacks the line", err)
			}
		})
	}
}

func TestOtherDeviceMayGoBack(t *testing.T) {
	in := hdr +
		"2024-01-01T00:00:05.000Z,a,,,1,,,,\n" +
		"2024-01-01T00:00:01.000Z,b,,,1,,,,\n" +
		"2024-01-01T00:00:06.000Z,a,,,1,,,,\n"
	if _, err := ReadAll(strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
}

func TestContinueAfterBadRow(t *testing.T) {
	in := hdr +
		"2024-01-01T00:00:00.000Z,a,,,x,,,,\n" +
		"2024-01-01T00:00:01.000Z,a,,,2,,,,\n"
	rd, err := NewReader(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rd.Read(); !errors.Is(err, ErrBadNumber) {
		t.Fatalf("err = %v", err)
	}
	r, err := rd.Read()
	if err != nil || r.Reading.Power != 2 || r.Line != 3 {
		t.Fatalf("row = %+v, err = %v", r, err)
	}
}

func TestWriteRoundTrip(t *testing.T) {
	t0 := time.Date(2024, 5, 1, 10, 0, 0, 123e6, time.UTC)
	in := []Row{
		{Device: "a", Label: "laptop", Reading: power.Reading{Time: t0, Voltage: 229.9, Current: 0.071, Power: 15.3, Energy: 1234, Frequency: 50.1, PF: 0.94, Has: power.AllMeterFields &^ power.FieldAlarm}},
		{Device: "a", Label: "laptop+solder", Reading: power.Reading{Time: t0.Add(time.Second), Power: 0.1, Has: power.FieldPower}},
		{Device: "b,with comma", Reading: power.Reading{Time: t0, Power: 3, PF: 0, Has: power.FieldPower | power.FieldPF}},
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, r := range in {
		if err := w.Write(r.Device, r.Reading, r.Label); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), hdr) {
		t.Fatalf("header: %q", buf.String())
	}
	if !strings.Contains(buf.String(), "2024-05-01T10:00:00.123Z,a,229.9,0.071,15.3,1234,50.1,0.94,laptop\n") {
		t.Errorf("output:\n%s", buf.String())
	}
	out, err := ReadAll(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		in[i].Line = i + 2
		if out[i] != in[i] {
			t.Errorf("row %d: got %+v, want %+v", i, out[i], in[i])
		}
	}
}

func TestWriterRefuses(t *testing.T) {
	t0 := time.Unix(0, 0)
	cases := []struct {
		dev  string
		r    power.Reading
		want error
	}{
		{"", power.Reading{Time: t0, Power: 1, Has: power.FieldPower}, ErrMissingField},
		{"d", power.Reading{Time: t0, Voltage: 1, Has: power.FieldVoltage}, ErrMissingField},
		{"d", power.Reading{Time: t0, Power: -1, Has: power.FieldPower}, ErrNegative},
		{"d", power.Reading{Time: t0, Power: 1, PF: 1.5, Has: power.FieldPower | power.FieldPF}, ErrPFRange},
	}
	for i, c := range cases {
		w := NewWriter(io.Discard)
		if err := w.Write(c.dev, c.r, ""); !errors.Is(err, c.want) {
			t.Errorf("case %d: err = %v, want %v", i, err, c.want)
		}
	}
}

func TestEmptyWriterWritesHeader(t *testing.T) {
	var buf bytes.Buffer
	if err := NewWriter(&buf).Flush(); err != nil {
		t.Fatal(err)
	}
	if buf.String() != hdr {
		t.Errorf("got %q", buf.String())
	}
}

// TestShippedDatasets reads every shipped dataset and checks the row counts
// its README states.
func TestShippedDatasets(t *testing.T) {
	want := map[string]int{"ompm.csv": 3803, "kehkok.csv": 1123, "tracebase.csv": 188411, "carreira.csv": 116}
	for name, n := range want {
		if testing.Short() && name == "tracebase.csv" {
			continue
		}
		f, err := os.Open(filepath.Join("..", "..", "datasets", name))
		if err != nil {
			t.Fatal(err)
		}
		rows, err := ReadAll(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(rows) != n {
			t.Errorf("%s: %d rows, want %d", name, len(rows), n)
		}
		for _, r := range rows {
			if r.Label == "" || r.Reading.Is(power.FieldEnergy) {
				t.Fatalf("%s line %d: %+v", name, r.Line, r)
			}
		}
	}
}

func FuzzReader(f *testing.F) {
	f.Add([]byte(hdr + "2023-02-16T12:08:26.215Z,ompm-main,244.5,0.11,27.4,,50.0,1.0,fan\n"))
	f.Add([]byte("power,device,timestamp\n1,a,2024-01-01T00:00:00Z\n-1,a,x\n"))
	f.Add([]byte(hdr + "2024-01-01T00:00:00Z,a,NaN,,1e308,,,2,\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rd, err := NewReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		var buf bytes.Buffer
		w := NewWriter(&buf)
		var good []Row
		for i := 0; i < 1000; i++ {
			r, err := rd.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				var pe *ParseError
				if !errors.As(err, &pe) {
					// csv-level errors other than ParseError end the stream.
					break
				}
				continue
			}
			// What the reader accepts the writer must write and read back.
			if err := w.Write(r.Device, r.Reading, r.Label); err != nil {
				t.Fatalf("write %+v: %v", r, err)
			}
			good = append(good, r)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		back, err := ReadAll(&buf)
		if err != nil {
			t.Fatalf("read back: %v\n%s", err, buf.String())
		}
		if len(back) != len(good) {
			t.Fatalf("read back %d rows, wrote %d", len(back), len(good))
		}
		for i := range good {
			a, b := good[i].Reading, back[i].Reading
			if !a.Time.Equal(b.Time) {
				t.Fatalf("row %d time %v -> %v", i, a.Time, b.Time)
			}
			a.Time, b.Time = time.Time{}, time.Time{}
			if a != b || good[i].Device != back[i].Device || good[i].Label != back[i].Label {
				t.Fatalf("row %d: %+v -> %+v", i, good[i], back[i])
			}
		}
	})
}

func BenchmarkRead(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(hdr)
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 1000
	for i := range n {
		sb.WriteString(t0.Add(time.Duration(i) * time.Second).Format(TimeLayout))
		sb.WriteString(",ompm-main,230.1,0.512,101.5,,50.0,0.86,fan+lamp\n")
	}
	data := []byte(sb.String())
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		rd, err := NewReader(bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		for {
			_, err := rd.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
}
