package server

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"loadwatch/internal/telemetry"
)

// readings is a batch message of n readings from seq first on.
func readings(epoch string, first uint64, n int, base time.Time) []byte {
	m := telemetry.Message{Epoch: epoch, Batch: n > 1}
	for i := range n {
		seq := first + uint64(i)
		m.Readings = append(m.Readings, telemetry.Telemetry{Seq: seq, ClockSynced: true, State: telemetry.StateActive,
			HasEnergyTotal: true, EnergyTotal: 1000 + powerWh(seq), Reading: readingAt(base.Add(time.Duration(seq)*time.Millisecond), float64(seq))})
	}
	return m.Marshal()
}

// BenchmarkEmbeddedQoS1 measures readings per second end to end: clients
// publish QoS 1 messages over TCP to the embedded broker and
// wait for each PUBACK, which the server sends only after the reading is
// classified and in the store's WAL. It reports readings/s and the p99 of
// publish-to-PUBACK latency (per reading: a batch's readings share their
// message's). Each client has its own device; batch=10 sends 10 readings
// per message as the agent's outbox does when it replays a backlog.
func BenchmarkEmbeddedQoS1(b *testing.B) {
	for _, bc := range []struct{ clients, batch int }{{1, 1}, {16, 1}, {1, 10}, {16, 10}} {
		clients, batch := bc.clients, bc.batch
		b.Run(fmt.Sprintf("clients=%d/batch=%d", clients, batch), func(b *testing.B) {
			s := start(b, Config{})
			conns := make([]func(topic string, payload []byte) (byte, error), clients)
			topics := make([]string, clients)
			for i := range conns {
				id := fmt.Sprintf("bench%d", i)
				tok := addDevice(b, s, id)
				c := dial(b, s.MQTTAddr(), id, tok, nil)
				conns[i] = func(topic string, payload []byte) (byte, error) { return publishE(c, topic, payload) }
				topics[i] = telemetry.Topic(id, telemetry.ChannelTelemetry)
			}
			var next atomic.Int64
			lat := make([][]time.Duration, clients)
			base := time.Now().Add(-time.Hour)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for i := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						n := next.Add(int64(batch))
						if n-int64(batch) >= int64(b.N) {
							return
						}
						p := readings("bench", uint64(n)-uint64(batch)+1, batch, base)
						t0 := time.Now()
						code, err := conns[i](topics[i], p)
						if err != nil || code != 0 {
							b.Errorf("publish: 0x%02x %v", code, err)
							return
						}
						for range batch {
							lat[i] = append(lat[i], time.Since(t0))
						}
					}
				}()
			}
			wg.Wait()
			el := time.Since(start)
			b.StopTimer()
			var all []time.Duration
			for _, l := range lat {
				all = append(all, l...)
			}
			sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
			if len(all) > 0 {
				b.ReportMetric(float64(len(all))/el.Seconds(), "readings/s")
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
			}
		})
	}
}
