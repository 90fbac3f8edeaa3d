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

// BenchmarkEmbeddedQoS1 measures readings per second end to end: clients
// publish single-reading QoS 1 messages over TCP to the embedded broker and
// wait for each PUBACK, which the server sends only after the reading is
// classified and in the store's WAL. It reports readings/s and the p99 of
// publish-to-PUBACK latency. Each client has its own device.
func BenchmarkEmbeddedQoS1(b *testing.B) {
	for _, clients := range []int{1, 16} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
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
						n := next.Add(1)
						if n > int64(b.N) {
							return
						}
						p := reading("bench", uint64(n), base.Add(time.Duration(n)*time.Millisecond))
						t0 := time.Now()
						code, err := conns[i](topics[i], p)
						if err != nil || code != 0 {
							b.Errorf("publish: 0x%02x %v", code, err)
							return
						}
						lat[i] = append(lat[i], time.Since(t0))
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
