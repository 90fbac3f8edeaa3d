package agent

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"loadwatch/internal/dutycycle"
	"loadwatch/internal/power"
	"loadwatch/internal/telemetry"
)

// linkMeter is a simMeter with the LinkReporter ability: it counts its
// reads per address like a driver would (a failed read is a timeout), and
// also reports an address that is not one of the agent's meters.
type linkMeter struct {
	*simMeter
	mu    sync.Mutex
	stats map[uint8]telemetry.LinkCounters
}

func (l *linkMeter) Read(ctx context.Context, addr uint8) (power.Reading, error) {
	r, err := l.simMeter.Read(ctx, addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.stats[addr]
	c.Requests++
	if err != nil {
		c.Timeouts++
	} else {
		c.Replies++
		c.LastLatency = 110 * time.Millisecond
	}
	l.stats[addr] = c
	return r, err
}

func (l *linkMeter) LinkStats() map[uint8]telemetry.LinkCounters {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[uint8]telemetry.LinkCounters{9: {Requests: 1, Timeouts: 1}}
	for a, c := range l.stats {
		out[a] = c
	}
	return out
}

type statusSeen struct {
	device string
	at     time.Time
	s      telemetry.Status
}

func statuses(t *testing.T, b *fakeBroker) []statusSeen {
	t.Helper()
	var out []statusSeen
	for _, p := range b.on(telemetry.ChannelStatus) {
		s, err := telemetry.DecodeStatus(p.payload, time.Time{}, telemetry.Limits{})
		if err != nil {
			t.Fatalf("agent sent an invalid status: %v\n%s", err, p.payload)
		}
		d, _, _ := telemetry.ParseTopic(p.topic)
		out = append(out, statusSeen{d, p.at, s})
	}
	return out
}

// TestStatusCarriesLinkCounters: an always-on agent whose sensor reports
// link counters publishes them in its status at the connection and again
// once per heartbeat period (10 wakes of 1 s) at a report, also while the meter does
// not answer (then only the timeouts grow); an address that is not one of
// its meters is left out.
func TestStatusCarriesLinkCounters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := &linkMeter{simMeter: newSimMeter(t, "0s:laptop"), stats: map[uint8]telemetry.LinkCounters{}}
		b := &fakeBroker{}
		cfg := testConfig(t, m, b)
		cfg.Duty = dutycycle.Config{Wake: time.Second, Heartbeat: 10, AlwaysOn: true}
		a, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		run(t, a, 30*time.Second, func() {
			time.Sleep(35 * time.Second)
			m.simMeter.mu.Lock()
			m.simMeter.fail = true
			m.simMeter.mu.Unlock()
		})
		st := statuses(t, b)
		var online []statusSeen
		for _, s := range st {
			if s.device != "pi1" {
				t.Fatalf("status for %s", s.device)
			}
			// An always-on agent connects before its first read: that
			// status has no counters yet.
			if s.s.State == telemetry.StatusOnline && s.s.Link != nil {
				online = append(online, s)
			}
		}
		if len(online) < 5 || len(online) > 8 {
			t.Fatalf("%d status online messages in 65 s with a 10 s heartbeat, want 5..8", len(online))
		}
		var prev telemetry.LinkCounters
		for i, s := range online {
			c, ok := s.s.Link[1]
			if !ok || len(s.s.Link) != 1 {
				t.Fatalf("status %d: link %+v, want address 1 only", i, s.s.Link)
			}
			if c.Requests < prev.Requests || c.Requests != c.Replies+c.Timeouts {
				t.Fatalf("status %d: counters %+v after %+v", i, c, prev)
			}
			if i > 0 {
				if gap := s.at.Sub(online[i-1].at); gap < 9*time.Second {
					t.Errorf("status refreshed %v after the previous one", gap)
				}
			}
			prev = c
		}
		if prev.Timeouts == 0 || prev.Replies == 0 {
			t.Errorf("last counters %+v: want the replies of the first 35 s and the timeouts after", prev)
		}
		// The goodbye carries the counters too.
		if last := st[len(st)-1]; last.s.State != telemetry.StatusOffline || last.s.Link[1].Requests < prev.Requests {
			t.Errorf("last status %+v", last.s)
		}
	})
}

// TestStatusLinkPerDevice: with several meters each device's status has
// its own meter's counters (none before that meter was first read) and the
// agent's id has all of them; a sensor without the ability sends no link
// member.
func TestStatusLinkPerDevice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := &linkMeter{simMeter: newSimMeter(t, "0s:laptop"), stats: map[uint8]telemetry.LinkCounters{}}
		b := &fakeBroker{}
		a, err := New(testConfig(t, m, b, Meter{Addr: 1}, Meter{Addr: 2}))
		if err != nil {
			t.Fatal(err)
		}
		run(t, a, 30*time.Second)
		got := map[string]bool{}
		for _, s := range statuses(t, b) {
			want := map[string][]uint8{"pi1.1": {1}, "pi1.2": {2}, "pi1": {1, 2}}[s.device]
			if _, bad := s.s.Link[9]; bad || len(s.s.Link) > len(want) {
				t.Fatalf("%s: link %+v, want addresses %v", s.device, s.s.Link, want)
			}
			if len(s.s.Link) < len(want) {
				continue
			}
			for _, addr := range want {
				if s.s.Link[addr].Requests == 0 {
					t.Fatalf("%s: no requests for address %d: %+v", s.device, addr, s.s.Link)
				}
			}
			got[s.device] = true
		}
		if len(got) != 3 {
			t.Fatalf("status for %v", got)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		b := &fakeBroker{}
		a, err := New(testConfig(t, newSimMeter(t, "0s:laptop"), b))
		if err != nil {
			t.Fatal(err)
		}
		run(t, a, 10*time.Second)
		st := statuses(t, b)
		if len(st) == 0 {
			t.Fatal("no status")
		}
		for _, s := range st {
			if s.s.Link != nil {
				t.Fatalf("link %+v from a sensor without counters", s.s.Link)
			}
		}
	})
}
