package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"loadwatch/internal/power"
	"loadwatch/internal/promapi"
	"loadwatch/internal/readingscsv"
	"loadwatch/internal/store"
)

var t0 = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

type stored struct {
	r     power.Reading
	class string
	conf  float64
	total power.WattHours
}

// fill stores n readings of device at 1 s (with a few irregular
// timestamps) the way ingest does, and returns them.
func fill(t testing.TB, st *store.Store, device string, n int, seed uint64) []stored {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	classes := []string{"nothing", "laptop", "laptop+solder", "3d_printer"}
	var out []stored
	var batch []store.Sample
	total := power.WattHours(12.5)
	for i := range n {
		ts := t0.Add(time.Duration(i)*time.Second + time.Duration(rng.IntN(900))*time.Millisecond)
		r := power.Reading{Time: ts, Voltage: power.Volts(225 + 10*rng.Float64()), Current: power.Amperes(rng.Float64() * 3),
			Power: power.Watts(rng.Float64() * 700), Frequency: power.Hertz(49.9 + 0.2*rng.Float64()), PF: power.PowerFactor(rng.Float64()),
			Has: power.FieldVoltage | power.FieldCurrent | power.FieldPower | power.FieldFrequency | power.FieldPF}
		if i%17 == 0 {
			r.Has &^= power.FieldPF // a source without PF
		}
		s := stored{r: r}
		ls := store.DeviceLabels(device)
		batch = store.ReadingSamples(batch, ls, r)
		if i%5 != 0 {
			total += power.WattHours(rng.Float64() / 10)
			s.total = total
			s.r.Energy, s.r.Has = total, s.r.Has|power.FieldEnergy
			batch = append(batch, store.EnergySample(ls, store.Millis(ts), total))
		}
		if i%7 != 0 {
			s.class, s.conf = classes[rng.IntN(len(classes))], 0.5+rng.Float64()/2
			batch = append(batch, store.ClassSample(device, s.class, store.Millis(ts), s.conf))
		}
		out = append(out, s)
	}
	if err := st.Append(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	return out
}

func openStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "tsdb"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func export(t testing.TB, q Querier, o ExportOptions) (string, ExportStats) {
	t.Helper()
	var b bytes.Buffer
	st, err := Export(context.Background(), q, &b, o)
	if err != nil {
		t.Fatal(err)
	}
	return b.String(), st
}

func TestExportImportRoundTrip(t *testing.T) {
	ctx := context.Background()
	a := openStore(t)
	want := fill(t, a, "kitchen", 1500, 1)
	fill(t, a, "garage", 300, 2)         // another device: not exported
	fill(t, a, "kitchen-2", 300, 3)      // a device whose id extends the first
	err := a.Append(ctx, []store.Sample{ // a voltage without power: skipped
		{Metric: store.MetricVoltage, Labels: store.DeviceLabels("kitchen"), T: store.Millis(t0.Add(-time.Second)), V: 230},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The range covers all of kitchen's data; the chunk (7 min) is not a
	// divisor of it, so samples sit on chunk boundaries too.
	o := ExportOptions{Device: "kitchen", From: t0.Add(-time.Second), To: want[len(want)-1].r.Time, Chunk: 7 * time.Minute}
	csvA, stA := export(t, a, o)
	if stA.Rows != len(want) || stA.Skipped != 1 {
		t.Fatalf("export stats %+v, want %d rows and 1 skipped", stA, len(want))
	}

	rows, err := readingscsv.ReadAll(strings.NewReader(csvA))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(rows), len(want))
	}
	labelled := 0
	for i, row := range rows {
		w := want[i]
		if row.Device != "kitchen" || !row.Reading.Time.Equal(w.r.Time.Truncate(time.Millisecond)) || row.Label != w.class {
			t.Fatalf("row %d: %+v, want %+v", i, row, w)
		}
		if row.Reading.Has != w.r.Has {
			t.Fatalf("row %d: fields %b, want %b", i, row.Reading.Has, w.r.Has)
		}
		g, x := row.Reading, w.r
		if g.Voltage != x.Voltage || g.Current != x.Current || g.Power != x.Power || g.Frequency != x.Frequency || (x.Is(power.FieldPF) && g.PF != x.PF) {
			t.Fatalf("row %d: %+v, want %+v", i, g, x)
		}
		if x.Is(power.FieldEnergy) && g.Energy.Joules() != x.Energy.Joules() {
			t.Fatalf("row %d: energy %v J, stored %v J", i, g.Energy.Joules(), x.Energy.Joules())
		}
		if w.class != "" {
			labelled++
		}
	}
	if stA.Labelled != labelled {
		t.Errorf("labelled %d, want %d", stA.Labelled, labelled)
	}

	// Import into an empty store: exporting it gives the same file.
	b := openStore(t)
	is, err := Import(ctx, b, strings.NewReader(csvA))
	if err != nil || is.Rows != len(want) || is.Refused != 0 || is.Devices["kitchen"] != len(want) {
		t.Fatalf("import: %+v, %v", is, err)
	}
	csvB, _ := export(t, b, o)
	if csvB != csvA {
		t.Fatalf("export after import differs:\n%.300s\nvs\n%.300s", csvB, csvA)
	}
	// Idempotent: again into the same store, and into the store the
	// export came from; nothing is refused and nothing changes.
	for _, st := range []*store.Store{b, a} {
		is, err := Import(ctx, st, strings.NewReader(csvA))
		if err != nil || is.Refused != 0 || is.LabelsKept != labelled {
			t.Fatalf("re-import: %+v, %v (want %d labels kept)", is, err, labelled)
		}
		if again, _ := export(t, st, o); again != csvA {
			t.Fatal("re-import changed the export")
		}
	}
	// An imported label is a class with confidence 1.
	res, err := b.Query(ctx, `count(loadwatch_class_confidence_ratio{device="kitchen"} != 1)`, t0.Add(10*time.Second))
	if err != nil || len(res.Series) != 0 {
		t.Errorf("confidence other than 1 after import: %+v %v", res, err)
	}
}

func TestExportOverHTTPMatchesStore(t *testing.T) {
	a := openStore(t)
	want := fill(t, a, "kitchen", 400, 4)
	srv := httptest.NewServer(promapi.New(a, promapi.Options{}))
	defer srv.Close()
	o := ExportOptions{Device: "kitchen", From: t0, To: want[len(want)-1].r.Time, Chunk: time.Minute}
	direct, _ := export(t, a, o)
	viaHTTP, st := export(t, HTTPQuerier{Base: srv.URL}, o)
	if viaHTTP != direct || st.Rows != len(want) {
		t.Fatalf("over HTTP (%+v):\n%.300s\ndirect:\n%.300s", st, viaHTTP, direct)
	}
	// A sub-range: both ends inclusive.
	o.From, o.To = want[10].r.Time.Truncate(time.Millisecond), want[20].r.Time.Truncate(time.Millisecond)
	if _, st := export(t, HTTPQuerier{Base: srv.URL}, o); st.Rows != 11 {
		t.Errorf("rows 10..20: %d, want 11", st.Rows)
	}
}

func TestExportErrors(t *testing.T) {
	a := openStore(t)
	var b bytes.Buffer
	for _, o := range []ExportOptions{
		{From: t0, To: t0},
		{Device: "x", To: t0},
		{Device: "x", From: t0.Add(time.Second), To: t0},
	} {
		if _, err := Export(context.Background(), a, &b, o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
	// No data: just the header.
	out, st := export(t, a, ExportOptions{Device: "ghost", From: t0, To: t0.Add(time.Hour)})
	if st.Rows != 0 || out != strings.Join(readingscsv.Columns, ",")+"\n" {
		t.Errorf("empty export %q %+v", out, st)
	}
	// A server error keeps its message.
	srv := httptest.NewServer(promapi.New(a, promapi.Options{}))
	defer srv.Close()
	_, err := HTTPQuerier{Base: srv.URL}.Query(context.Background(), "rate(", t0)
	if err == nil || !strings.Contains(err.Error(), "bad_data") {
		t.Errorf("bad query over HTTP: %v", err)
	}
}

func TestImportErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, csv string
		want      error
		stored    int
	}{
		{"header", "time,power\n", readingscsv.ErrHeader, 0},
		{"bad number after a good row", "timestamp,device,power\n2026-11-29T10:00:00Z,a,5\n2026-11-29T10:00:01Z,a,x\n", readingscsv.ErrBadNumber, 1},
		{"device id", "timestamp,device,power\n2026-11-29T10:00:00Z,a/b,5\n", nil, 0},
		{"order", "timestamp,device,power\n2026-11-29T10:00:01Z,a,5\n2026-11-29T10:00:00Z,a,5\n", readingscsv.ErrTimeOrder, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := openStore(t)
			is, err := Import(ctx, st, strings.NewReader(tc.csv))
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if is.Rows != tc.stored {
				t.Errorf("rows %d, want %d", is.Rows, tc.stored)
			}
			res, qerr := st.Query(ctx, `count(loadwatch_power_watts)`, t0.Add(time.Minute))
			n := 0
			if qerr == nil && len(res.Series) == 1 {
				n = int(res.Series[0].Points[0].V)
			}
			if n != min(tc.stored, 1) {
				t.Errorf("stored series %d, want %d", n, min(tc.stored, 1))
			}
		})
	}
}

func TestImportConflictCounted(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	if _, err := Import(ctx, st, strings.NewReader("timestamp,device,power\n2026-11-29T10:00:00Z,a,5\n")); err != nil {
		t.Fatal(err)
	}
	is, err := Import(ctx, st, strings.NewReader("timestamp,device,power\n2026-11-29T10:00:00Z,a,6\n"))
	if err != nil || is.Refused != 1 || !errors.Is(is.First, store.ErrConflict) {
		t.Fatalf("%+v %v", is, err)
	}
}

func TestWhFromJoules(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	exact := 0
	const n = 10000
	for range n {
		j := rng.Float64() * math.Pow(10, float64(rng.IntN(12)))
		w := whFromJoules(j)
		if math.Abs(float64(w)*3600-j) > 1e-9*j {
			t.Fatalf("%v J -> %v Wh", j, w)
		}
		if w.Joules() == j {
			exact++
		}
	}
	t.Logf("%d of %d random totals convert back exactly", exact, n)
	if exact < n*9/10 {
		t.Errorf("only %d of %d exact", exact, n)
	}
}

func FuzzConvertProm(f *testing.F) {
	f.Add(`{"resultType":"matrix","result":[{"metric":{"__name__":"x","device":"a"},"values":[[1700000000.123,"1.5"],[1700000001,"NaN"]]}]}`)
	f.Add(`{"resultType":"vector","result":[{"metric":{},"value":[1,"+Inf"]}]}`)
	f.Add(`{"resultType":"scalar","result":[1,"2"]}`)
	f.Add(`{"resultType":"matrix","result":[{"values":[["x",1]]}]}`)
	f.Fuzz(func(t *testing.T, data string) {
		res, err := convertProm(promResponse{Status: "success", Data: []byte(data)})
		if err == nil && res.Type != store.TypeMatrix && res.Type != store.TypeVector {
			t.Fatalf("accepted type %q", res.Type)
		}
	})
}

func BenchmarkExport(b *testing.B) {
	st := openStore(b)
	want := fill(b, st, "kitchen", 3600, 6)
	o := ExportOptions{Device: "kitchen", From: t0, To: want[len(want)-1].r.Time}
	var buf bytes.Buffer
	b.ResetTimer()
	for b.Loop() {
		buf.Reset()
		if _, err := Export(context.Background(), st, &buf, o); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(want)), "rows/op")
}

func BenchmarkImport(b *testing.B) {
	src := openStore(b)
	want := fill(b, src, "kitchen", 3600, 7)
	csv, _ := export(b, src, ExportOptions{Device: "kitchen", From: t0, To: want[len(want)-1].r.Time})
	st := openStore(b)
	b.ResetTimer()
	for b.Loop() {
		if _, err := Import(context.Background(), st, strings.NewReader(csv)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(want)), "rows/op")
}

// TestImportOldData imports readings from a month before the store's
// newest sample with the import window, then reopens the store as the
// server does and finds them.
func TestImportOldData(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := OpenStore(dir, false, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fill(t, st, "kitchen", 10, 12)
	old := t0.Add(-30 * 24 * time.Hour)
	csv := fmt.Sprintf("timestamp,device,power,label\n%s,kitchen,42,laptop\n%s,kitchen,43,laptop\n",
		old.Format(time.RFC3339), old.Add(time.Second).Format(time.RFC3339))
	is, err := Import(ctx, st, strings.NewReader(csv))
	if err != nil || is.Refused != 2*2 || !errors.Is(is.First, store.ErrTooOld) {
		t.Fatalf("with the server's window: %+v %v", is, err)
	}
	st.Close()

	st, err = OpenStore(dir, true, store.Options{OutOfOrderWindow: ImportWindow, Retention: ImportWindow})
	if err != nil {
		t.Fatal(err)
	}
	if is, err := Import(ctx, st, strings.NewReader(csv)); err != nil || is.Refused != 0 {
		t.Fatalf("with the import window: %+v %v", is, err)
	}
	st.Close()
	st, err = OpenStore(dir, true, store.Options{Retention: ImportWindow})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	out, es := export(t, st, ExportOptions{Device: "kitchen", From: old, To: old.Add(time.Minute)})
	if es.Rows != 2 || es.Labelled != 2 {
		t.Fatalf("after reopening: %+v\n%s", es, out)
	}
}

func BenchmarkExportHTTP(b *testing.B) {
	st := openStore(b)
	want := fill(b, st, "kitchen", 3600, 14)
	srv := httptest.NewServer(promapi.New(st, promapi.Options{}))
	defer srv.Close()
	o := ExportOptions{Device: "kitchen", From: t0, To: want[len(want)-1].r.Time}
	var buf bytes.Buffer
	for b.Loop() {
		buf.Reset()
		if _, err := Export(context.Background(), HTTPQuerier{Base: srv.URL}, &buf, o); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(want)), "rows/op")
}
