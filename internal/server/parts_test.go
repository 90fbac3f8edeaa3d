package server

import (
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	"loadwatch/internal/ingest"
	"loadwatch/internal/telemetry"
)

type countNotifier struct{ readings atomic.Int64 }

func (c *countNotifier) Notify(e ingest.Event) {
	if e.Type == ingest.EventReading {
		c.readings.Add(1)
	}
}

// TestDashboardFuncAndNotifiers: a dashboard built from the running
// server's parts is served at /, the API keeps its paths, and extra
// notifiers see ingest's events.
func TestDashboardFuncAndNotifiers(t *testing.T) {
	var got Parts
	n := &countNotifier{}
	s := start(t, Config{
		Notifiers: []ingest.Notifier{n},
		DashboardFunc: func(_ context.Context, p Parts) (http.Handler, error) {
			got = p
			return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "dashboard") }), nil
		},
	})
	if got.Pipeline == nil || got.Registry == nil || got.Store == nil || got.Bus == nil || got.Commands == nil || got.Query == nil || got.Holder == nil {
		t.Fatalf("parts %+v", got)
	}
	resp, err := http.Get("http://" + s.HTTPAddr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "dashboard" {
		t.Errorf("/ served %q", b)
	}
	tok := addDevice(t, s, "d")
	c := dial(t, s.MQTTAddr(), "d", tok, nil)
	if code := publish(t, c, telemetry.Topic("d", telemetry.ChannelTelemetry), reading("e", 1, testNow())); code != 0 {
		t.Fatalf("0x%02x", code)
	}
	if n.readings.Load() != 1 {
		t.Errorf("extra notifier saw %d readings", n.readings.Load())
	}
	var devs []any
	getJSON(t, "http://"+s.HTTPAddr()+"/api/v1/devices", &devs)
	if len(devs) != 1 {
		t.Errorf("devices %v", devs)
	}
}
