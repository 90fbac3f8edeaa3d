package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"
)

func TestReconcileTable(t *testing.T) {
	devs := []DeviceAcks{
		{Device: "a", Epochs: []string{"e0", "e1"}, Acked: []acked{{0, 1, 1000}, {0, 2, 2000}, {1, 3, 3000}, {1, 3, 3000}}},
		{Device: "b", Epochs: []string{"f0"}, Acked: []acked{{0, 7, 1500}}},
	}
	got := reconcile(devs, map[string][]int64{"a": {1000, 3000, 4000}, "b": {1500}})
	want := Reconciliation{Acked: 4, Stored: 3, Lost: 1, StoredUnacked: 1,
		Gaps: []Gap{{Device: "a", Epoch: "e0", Seq: 2, Time: time.UnixMilli(2000).UTC()}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if r := reconcile(devs, map[string][]int64{"a": {1000, 2000, 3000}, "b": {1500}}); r.Lost != 0 || r.Stored != 4 || r.StoredUnacked != 0 {
		t.Errorf("all stored: %+v", r)
	}
}

// TestReconcileReportsDroppedReading runs a fleet against a real server,
// then adds to one device's ledger an acknowledgement for a reading that
// never reached the server (a reading dropped after its PUBACK): the
// reconciliation must name exactly that reading.
func TestReconcileReportsDroppedReading(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o := Options{Devices: 5, Interval: 20 * time.Millisecond, Command: testCommand, Log: tlog{t}}
	o.defaults()
	e, creds, err := setup(ctx, &o, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	f, err := NewFleet(FleetConfig{Devices: creds, Interval: o.Interval, Broker: e.broker})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	f.Start(ctx)
	time.Sleep(500 * time.Millisecond)
	f.Stop()
	if err := f.Drain(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	rc, err := f.Reconcile(ctx, e.api)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Lost != 0 || rc.Acked == 0 || rc.Stored != rc.Acked {
		t.Fatalf("before the drop: %+v", rc)
	}
	d := f.devs[3]
	d.mu.Lock()
	last := d.acked[len(d.acked)-1]
	dropped := acked{epoch: last.epoch, seq: last.seq + 1000, ms: last.ms - 1}
	d.acked = append(d.acked, dropped)
	d.mu.Unlock()
	rc, err = f.Reconcile(ctx, e.api)
	if err != nil {
		t.Fatal(err)
	}
	want := Gap{Device: d.cred.ID, Epoch: d.epochs[dropped.epoch], Seq: dropped.seq, Time: time.UnixMilli(dropped.ms).UTC()}
	if rc.Lost != 1 || len(rc.Gaps) != 1 || rc.Gaps[0] != want || rc.Stored != rc.Acked-1 {
		t.Errorf("after the drop: %+v, want one gap %+v", rc, want)
	}
}

func TestQueryParsesVectorAndMatrix(t *testing.T) {
	answers := map[string]string{
		"count_over_time(x[1s])": `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"device":"a"},"value":[1764400000.123,"42"]}]}}`,
		"x[1s]":                  `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"device":"a"},"values":[[1764400000.001,"1"],[1764400000.999,"2.5"]]}]}}`,
		"bad(":                   `{"status":"error","errorType":"bad_data","error":"parse error"}`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := answers[r.URL.Query().Get("query")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.URL.Query().Get("query") == "bad(" {
			w.WriteHeader(http.StatusBadRequest)
		}
		w.Write([]byte(a))
	}))
	defer srv.Close()
	api := &API{Base: srv.URL}
	ctx := context.Background()
	v, err := api.Query(ctx, "count_over_time(x[1s])", time.Now())
	if err != nil || len(v) != 1 || v[0].Labels["device"] != "a" || v[0].Samples[0] != (Sample{T: 1764400000123, V: 42}) {
		t.Errorf("vector: %+v, %v", v, err)
	}
	m, err := api.Query(ctx, "x[1s]", time.Now())
	if err != nil || len(m) != 1 || !reflect.DeepEqual(m[0].Samples, []Sample{{1764400000001, 1}, {1764400000999, 2.5}}) {
		t.Errorf("matrix: %+v, %v", m, err)
	}
	if _, err := api.Query(ctx, "bad(", time.Now()); err == nil {
		t.Error("an error answer was accepted")
	}
}

func TestRejectionsFromExposition(t *testing.T) {
	m, err := parseExposition(`# HELP loadwatch_ingest_rejected_total x
# TYPE loadwatch_ingest_rejected_total counter
loadwatch_ingest_rejected_total{device="a",reason="too_large"} 3
loadwatch_ingest_rejected_total{device="b",reason="too_large"} 2
loadwatch_ingest_rejected_total{device="",reason="bad_topic"} 1
loadwatch_mqtt_acl_denied_total 4
process_resident_memory_bytes 1.2e+07
`)
	if err != nil {
		t.Fatal(err)
	}
	got := Rejections(m)
	want := map[string]float64{"too_large": 5, "bad_topic": 1, "acl_denied": 4}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if _, err := parseExposition("novalue\n"); err == nil {
		t.Error("a line without a value was accepted")
	}
}
