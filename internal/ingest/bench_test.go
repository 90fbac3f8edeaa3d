package ingest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"loadwatch/internal/store"
	"loadwatch/internal/telemetry"
)

// BenchmarkIngestParallelStore measures ingest with many concurrent
// publishers (128 goroutines, one device each, one reading per message)
// into the real store, where every message must be in the WAL before
// Ingest returns: the case the group commit is for.
func BenchmarkIngestParallelStore(b *testing.B) {
	st, err := store.Open(b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	p, _ := New(Config{Store: st, Classifier: fixedModel{testModel(b)}, Now: func() time.Time { return t0.Add(24 * time.Hour) }})
	var devs atomic.Int64
	b.SetParallelism(64)
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		dev := fmt.Sprintf("d%d", devs.Add(1))
		topic := telemetry.Topic(dev, telemetry.ChannelTelemetry)
		for seq := uint64(1); pb.Next(); seq++ {
			msg := payload("e", seq, t0.Add(time.Duration(seq)*time.Second), "100")
			if c, err := p.Ingest(context.Background(), dev, topic, msg); c != 0 {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "readings/s")
}
