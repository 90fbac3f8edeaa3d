package broker

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"loadwatch/internal/registry"

	"github.com/eclipse/paho.golang/paho"
)

// TestLaggingSubscriber publishes a burst to a QoS 1 subscriber that does
// not read until the burst is over. Within the outbound queue (1,024 by
// default; `serve --mqtt-client-queue` raises it) and the inflight limit
// nothing is dropped; beyond either, messages are dropped and counted:
// mochi's default MaxInflight (8192) loses part of a 10,000 burst even
// with a deep queue (issue 5 measured 11.5 %), and so does a short queue.
func TestLaggingSubscriber(t *testing.T) {
	for _, tc := range []struct {
		name        string
		maxInflight uint16
		queue       int32
		burst       int
		pad         int // payload bytes beyond the sequence number
		wantDrops   bool
	}{
		{"default queue, burst within it", 0, 0, 1000, 0, false},
		// (paho keeps reading into its own buffer while its handler
		// blocks, so only a queue much shorter than the burst overflows
		// for certain)
		{"short queue, burst beyond it", 0, 16, 10000, 2000, true},
		{"deep queue", 0, 65536, 10000, 0, false},
		{"mochi default inflight", 8192, 65536, 10000, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			burst, pad := tc.burst, strings.Repeat("x", tc.pad)
			e := newEnv(t)
			b, _ := start(t, Config{MaxInflight: tc.maxInflight, MaxPendingWrites: tc.queue}, e.reg, nil)
			nc, err := net.Dial("tcp", b.Addr("tcp"))
			if err != nil {
				t.Fatal(err)
			}
			gate := make(chan struct{})
			got := make(chan struct{}, burst)
			c := paho.NewClient(paho.ClientConfig{
				Conn: nc,
				OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(paho.PublishReceived) (bool, error) {
					<-gate // lag: read nothing more until the burst is published
					got <- struct{}{}
					return true, nil
				}},
			})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := c.Connect(ctx, &paho.Connect{ClientID: "admin:sub", Username: registry.AdminName, UsernameFlag: true,
				Password: []byte(e.admin), PasswordFlag: true, CleanStart: true, KeepAlive: 60}); err != nil {
				t.Fatal(err)
			}
			defer c.Disconnect(&paho.Disconnect{})
			if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "loadwatch/v1/+/telemetry", QoS: 1}}}); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < burst; i++ {
				if err := b.Publish("loadwatch/v1/pi/telemetry", fmt.Appendf(nil, `{"seq":%d,"pad":"%s"}`, i, pad), false, 1); err != nil {
					t.Fatal(err)
				}
			}
			s := b.Stats()
			close(gate)
			drops := s.InflightDropped + s.MessagesDropped
			if tc.wantDrops {
				if drops == 0 {
					t.Fatal("no drops: the test did not make the subscriber lag")
				}
				t.Logf("%s: %d of %d dropped (%.1f %%; inflight %d, queue %d)", tc.name, drops, burst, 100*float64(drops)/float64(burst), s.InflightDropped, s.MessagesDropped)
				return
			}
			if drops != 0 {
				t.Fatalf("dropped %d (inflight %d, queue %d)", drops, s.InflightDropped, s.MessagesDropped)
			}
			for i := 0; i < burst; i++ {
				select {
				case <-got:
				case <-ctx.Done():
					t.Fatalf("received %d of %d", i, burst)
				}
			}
		})
	}
}
