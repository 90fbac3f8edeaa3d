package agent

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"loadwatch/internal/dutycycle"
	"loadwatch/internal/safety"
	"loadwatch/internal/telemetry"
)

// relayStatuses are the relay members of the online statuses of device,
// in publish order, with their publish times.
func relayStatuses(t *testing.T, b *fakeBroker, device string) ([]telemetry.RelayState, []time.Time) {
	t.Helper()
	var rs []telemetry.RelayState
	var at []time.Time
	for _, s := range statuses(t, b) {
		if s.device == device && s.s.State == telemetry.StatusOnline {
			rs, at = append(rs, s.s.Relay), append(at, s.at)
		}
	}
	return rs, at
}

// TestStatusCarriesRelayState: the status published at the connection
// says the relay is closed; a trip republishes it at once as tripped and a
// relay_reset as closed again, each after the relay switched and before
// the next change, for an always-on and a duty-cycled agent alike. The
// last will and the goodbye (offline) carry no relay.
func TestStatusCarriesRelayState(t *testing.T) {
	for _, alwaysOn := range []bool{true, false} {
		t.Run(fmt.Sprintf("alwaysOn=%v", alwaysOn), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				m := newSimMeter(t, "0s:laptop")
				b := &fakeBroker{}
				rel := &fakeRelay{circ: m.circ}
				cfg := testConfig(t, m, b, Meter{Addr: 1, Relay: rel})
				cfg.Duty = dutycycle.Config{Wake: 5 * time.Second, Heartbeat: 60, AlwaysOn: alwaysOn}
				// Recovery far away: the trip stays "tripped" until the reset.
				cfg.Safety = safety.Config{MaxPower: 150, Recovery: time.Hour, MaxRetries: 3}
				a, err := New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				var resetAt time.Time
				run(t, a, 20*time.Second, func() {
					time.Sleep(20 * time.Second)
					m.circ.Switch("3d_printer", true, time.Now())
					time.Sleep(20 * time.Second)
					// The load goes away, then the reset closes the relay
					// (the agent lingers 1 s after a report: send the
					// command while it is connected, as a broker would
					// queue it for the next wake).
					m.circ.Switch("3d_printer", false, time.Now())
					for !b.send(telemetry.Topic("pi1", telemetry.ChannelCmd), cmd("r1", telemetry.CmdRelayReset, "")) {
						time.Sleep(100 * time.Millisecond)
					}
					resetAt = time.Now()
				})
				closed, switched := rel.changes()
				if fmt.Sprint(closed) != "[true false true]" {
					t.Fatalf("relay sets %v: want closed at start, trip, reset", closed)
				}
				if k := acks(t, b)["r1"]; !k.OK || k.State != "closed" {
					t.Fatalf("reset ack %+v", k)
				}
				rs, at := relayStatuses(t, b, "pi1")
				// Compress repeats (a duty-cycled agent says its state at
				// every connection; the heartbeat refresh repeats it too).
				var seq []telemetry.RelayState
				var first []time.Time
				for i, r := range rs {
					if len(seq) == 0 || seq[len(seq)-1] != r {
						seq, first = append(seq, r), append(first, at[i])
					}
				}
				if fmt.Sprint(seq) != "[closed tripped closed]" {
					t.Fatalf("relay in the online statuses %v, want closed, tripped, closed", rs)
				}
				if first[1].Before(switched[1]) || !first[1].Before(resetAt) {
					t.Errorf("tripped status at %v: the trip was at %v, the reset at %v", first[1], switched[1], resetAt)
				}
				if first[1].Sub(switched[1]) > 2*time.Second {
					t.Errorf("tripped status %v after the trip", first[1].Sub(switched[1]))
				}
				if first[2].Before(switched[2]) || first[2].Sub(switched[2]) > 2*time.Second {
					t.Errorf("closed status at %v, the reset switched at %v", first[2], switched[2])
				}
				st := statuses(t, b)
				if last := st[len(st)-1]; last.s.State != telemetry.StatusOffline || last.s.Relay != "" {
					t.Errorf("goodbye %+v", last.s)
				}
				will, err := telemetry.DecodeStatus(b.will, time.Time{}, telemetry.Limits{})
				if err != nil || will.State != telemetry.StatusOffline || will.Relay != "" {
					t.Errorf("last will %s: %+v %v", b.will, will, err)
				}
			})
		})
	}
}

// TestStatusRelayLatchAndOff: by default (no recovery) a trip latches at
// once and the status says latched; relay_off on a latched relay switches
// nothing but changes the state, and the status says open. A restart
// holds the relay open and its first status says so.
func TestStatusRelayLatchAndOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newSimMeter(t, "0s:laptop")
		b := &fakeBroker{}
		rel := &fakeRelay{circ: m.circ}
		cfg := testConfig(t, m, b, Meter{Addr: 1, Relay: rel})
		cfg.Duty.AlwaysOn = true
		cfg.Safety = safety.Config{MaxPower: 150}
		a, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		run(t, a, 10*time.Second, func() {
			time.Sleep(10 * time.Second)
			m.circ.Switch("3d_printer", true, time.Now())
			time.Sleep(20 * time.Second)
			b.send(telemetry.Topic("pi1", telemetry.ChannelCmd), cmd("o1", telemetry.CmdRelayOff, ""))
		})
		if closed, _ := rel.changes(); fmt.Sprint(closed) != "[true false]" {
			t.Fatalf("relay sets %v: want closed at start, then the trip only", closed)
		}
		rs, _ := relayStatuses(t, b, "pi1")
		if fmt.Sprint(rs) != "[closed latched open]" {
			t.Fatalf("relay in the online statuses %v, want closed, latched, open", rs)
		}
		b2 := &fakeBroker{}
		cfg.Dialer = b2
		a2, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		run(t, a2, 10*time.Second)
		if rs, _ := relayStatuses(t, b2, "pi1"); len(rs) == 0 || rs[0] != telemetry.RelayOpen {
			t.Fatalf("after the restart: relay in the online statuses %v, want open first", rs)
		}
	})
}

// TestStatusRelayPerDevice: with several meters each device's status has
// its own relay's state, a meter without a relay sends none, and the
// agent's own id (not a device) sends none.
func TestStatusRelayPerDevice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newSimMeter(t, "0s:laptop")
		b := &fakeBroker{}
		a, err := New(testConfig(t, m, b, Meter{Addr: 1, Relay: &fakeRelay{}}, Meter{Addr: 2}))
		if err != nil {
			t.Fatal(err)
		}
		run(t, a, 20*time.Second)
		want := map[string]telemetry.RelayState{"pi1.1": telemetry.RelayClosed, "pi1.2": "", "pi1": ""}
		seen := map[string]bool{}
		for _, s := range statuses(t, b) {
			if s.s.State != telemetry.StatusOnline {
				continue
			}
			w, ok := want[s.device]
			if !ok || s.s.Relay != w {
				t.Errorf("status of %s: relay %q, want %q", s.device, s.s.Relay, w)
			}
			seen[s.device] = true
		}
		if len(seen) != 3 {
			t.Fatalf("online statuses for %v", seen)
		}
	})
}
