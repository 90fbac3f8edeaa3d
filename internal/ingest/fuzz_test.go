package ingest

import (
	"context"
	"errors"
	"testing"
	"time"

	"loadwatch/internal/features"
	"loadwatch/internal/forest"
	"loadwatch/internal/store"
	"loadwatch/internal/telemetry"
)

// FuzzIngest: any payload on any channel is either taken (0) or refused
// with one of the documented codes and a *RefusedError; it never panics.
func FuzzIngest(f *testing.F) {
	f.Add("telemetry", payload("e", 1, t0, "100"))
	f.Add("telemetry", []byte(`{"v":1,"epoch":"e","readings":[{"seq":1,"ts":"2026-11-29T12:00:00Z","clock_synced":false,"power":5,"state":"heartbeat","features":{"v":1,"p":5}}]}`))
	f.Add("event", []byte(`{"v":1,"kind":"load_on","ts":"2026-11-29T12:00:00Z","clock_synced":true}`))
	f.Add("status", []byte(`{"v":1,"state":"offline"}`))
	f.Add("status", []byte(`{"v":1,"state":"online","link":{"1":{"requests":9,"replies":7,"crc_errors":1,"timeouts":1,"last_latency_ms":112.5}}}`))
	f.Add("cmd/ack", []byte(`{"v":1,"id":"x","ok":true}`))
	f.Add("tele", []byte(`{"Time":"2026-11-29T12:00:00","ENERGY":{"Total":1,"Power":2}}`))
	st := &memStore{}
	p, _ := New(Config{Store: st, Now: func() time.Time { return t0 },
		Tasmota: func(context.Context, string) (string, *time.Location, error) { return "tas", time.UTC, nil }})
	f.Fuzz(func(t *testing.T, ch string, b []byte) {
		topic := "loadwatch/v1/dev/" + ch
		if ch == "tele" {
			topic = "tele/plug/SENSOR"
		}
		code, err := p.Ingest(context.Background(), "dev", topic, b)
		switch code {
		case CodeOK:
			if err != nil {
				t.Fatalf("code 0 with error %v", err)
			}
		case CodePayloadFormat, CodeNotAuthorized, CodeQuotaExceeded, CodeUnspecified:
			var re *RefusedError
			if !errors.As(err, &re) || re.Reason == "" {
				t.Fatalf("code 0x%02x with error %v", code, err)
			}
		default:
			t.Fatalf("unexpected code 0x%02x", code)
		}
	})
}

// testModel is a tiny lw1 forest that tells "low" from "high" power.
func testModel(tb testing.TB) *forest.Model {
	names, _ := features.Names(features.SetLW1)
	nf := len(names)
	var d forest.Dataset
	for i := 0; i < 40; i++ {
		x := make([]float32, nf)
		x[0] = float32(i * 10)
		d.X = append(d.X, x...)
		d.Y = append(d.Y, int32(i/20))
	}
	d.NFeatures, d.Classes, d.Features = nf, []string{"high", "low"}, names
	fo, err := forest.Train(context.Background(), d, forest.Config{Trees: 5, Seed: 1})
	if err != nil {
		tb.Fatal(err)
	}
	return &forest.Model{FeatureSet: features.SetLW1, Features: names, Classes: d.Classes, Forest: fo}
}

type fixedModel struct{ m *forest.Model }

func (f fixedModel) Model() *forest.Model { return f.m }

func TestAgentFeaturesUsedWhenSetMatches(t *testing.T) {
	st := &memStore{}
	p, _ := New(Config{Store: st, Classifier: fixedModel{testModel(t)}, Now: func() time.Time { return t0 }})
	topic := telemetry.Topic("d", telemetry.ChannelTelemetry)
	with := []byte(`{"v":1,"epoch":"e","seq":1,"ts":"2026-11-29T12:00:00Z","clock_synced":true,"power":5,"state":"active","features":{"v":1,"p":5}}`)
	other := []byte(`{"v":1,"epoch":"e","seq":2,"ts":"2026-11-29T12:00:01Z","clock_synced":true,"power":5,"state":"active","features":{"v":7,"p":5}}`)
	for _, b := range [][]byte{with, other} {
		if c, err := p.Ingest(context.Background(), "d", topic, b); c != 0 {
			t.Fatal(err)
		}
	}
	s := p.Stats()
	if s.AgentFeatures != 1 || s.ServerFeatures != 1 || s.Classified != 2 {
		t.Fatalf("stats %+v", s)
	}
	if d, _ := p.Device("d"); !d.Classified || d.Class == "" {
		t.Fatalf("device %+v", d)
	}
}

func BenchmarkIngest(b *testing.B) {
	p, _ := New(Config{Store: discard{}, Classifier: fixedModel{testModel(b)}, Now: func() time.Time { return t0.Add(time.Hour) }})
	topic := telemetry.Topic("d", telemetry.ChannelTelemetry)
	msgs := make([][]byte, 1024)
	for i := range msgs {
		msgs[i] = payload("e", uint64(i+1), t0.Add(time.Duration(i)*time.Second), "100")
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%len(msgs) == 0 {
			p.Forget("d") // a fresh dedupe window
		}
		if c, err := p.Ingest(context.Background(), "d", topic, msgs[i%len(msgs)]); c != 0 {
			b.Fatal(err)
		}
	}
}

type discard struct{}

func (discard) Append(context.Context, []store.Sample) error { return nil }
