package ingest

import (
	"sync"
	"sync/atomic"
	"time"

	"loadwatch/internal/telemetry"
)

// EventType says what an Event reports.
type EventType string

// The event types.
const (
	EventReading  EventType = "reading"  // a stored reading (with its class)
	EventAnomaly  EventType = "anomaly"  // a server-side or device event (Kind, Source)
	EventStatus   EventType = "status"   // a device's online/offline status
	EventAck      EventType = "ack"      // a command acknowledgement
	EventRejected EventType = "rejected" // a refused message (Reason)
)

// Event sources.
const (
	SourceServer = "server" // detected by the server
	SourceDevice = "device" // reported by the device
)

// KindClockSkew is the server-side event raised when a device's clock runs
// ahead of the server's receive time by more than Config.SkewThreshold.
const KindClockSkew = "clock_skew"

// Event is what ingest tells the rest of the server. Fields that do not
// apply to a Type are left zero (and out of the JSON).
type Event struct {
	Type         EventType             `json:"type"`
	Device       string                `json:"device,omitempty"`
	Time         time.Time             `json:"ts"`
	Seq          uint64                `json:"seq,omitempty"`
	State        string                `json:"state,omitempty"`
	Voltage      *float64              `json:"voltage,omitempty"`
	Current      *float64              `json:"current,omitempty"`
	Power        *float64              `json:"power,omitempty"`
	Frequency    *float64              `json:"frequency,omitempty"`
	PF           *float64              `json:"pf,omitempty"`
	EnergyJoules *float64              `json:"energy_joules,omitempty"`
	Class        string                `json:"class,omitempty"`
	Confidence   *float64              `json:"confidence,omitempty"`
	Kind         string                `json:"kind,omitempty"`
	Source       string                `json:"source,omitempty"`
	Detail       string                `json:"detail,omitempty"`
	Status       string                `json:"status,omitempty"`
	Firmware     string                `json:"firmware,omitempty"`
	Relay        string                `json:"relay,omitempty"` // status: the relay's state, when the status says it
	Ack          *telemetry.CommandAck `json:"ack,omitempty"`
	Reason       string                `json:"reason,omitempty"`
}

// Notifiers fans an event out to several Notifiers.
type Notifiers []Notifier

// Notify implements Notifier.
func (ns Notifiers) Notify(e Event) {
	for _, n := range ns {
		n.Notify(e)
	}
}

// Bus is the in-process events bus: Notify never blocks; each subscriber
// has a bounded queue and a slow subscriber loses events (counted) rather
// than slowing ingest. It also keeps the last Keep anomaly, status and ack
// events for GET /api/v1/events.
type Bus struct {
	mu      sync.Mutex
	subs    map[*Subscription]struct{}
	recent  []Event
	next    int
	keep    int
	dropped atomic.Uint64
}

// NewBus returns a bus that remembers the last keep non-reading events
// (default 1000 when keep <= 0).
func NewBus(keep int) *Bus {
	if keep <= 0 {
		keep = 1000
	}
	return &Bus{subs: map[*Subscription]struct{}{}, keep: keep}
}

// Subscription receives events on C until Close.
type Subscription struct {
	C      <-chan Event
	c      chan Event
	b      *Bus
	filter func(Event) bool
	once   sync.Once
}

// Subscribe returns a subscription with a queue of size events (default
// 256) that receives the events filter accepts (nil: all).
func (b *Bus) Subscribe(size int, filter func(Event) bool) *Subscription {
	if size <= 0 {
		size = 256
	}
	c := make(chan Event, size)
	s := &Subscription{C: c, c: c, b: b, filter: filter}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// Close ends the subscription and closes C.
func (s *Subscription) Close() {
	s.once.Do(func() {
		s.b.mu.Lock()
		delete(s.b.subs, s)
		s.b.mu.Unlock()
		close(s.c)
	})
}

// Notify implements Notifier.
func (b *Bus) Notify(e Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e.Type != EventReading {
		if len(b.recent) < b.keep {
			b.recent = append(b.recent, e)
		} else {
			b.recent[b.next] = e
			b.next = (b.next + 1) % b.keep
		}
	}
	for s := range b.subs {
		if s.filter != nil && !s.filter(e) {
			continue
		}
		select {
		case s.c <- e:
		default:
			b.dropped.Add(1)
		}
	}
}

// Recent returns the remembered events that filter accepts (nil: all),
// oldest first, at most limit (<= 0: all) of the newest.
func (b *Bus) Recent(filter func(Event) bool, limit int) []Event {
	b.mu.Lock()
	all := make([]Event, 0, len(b.recent))
	all = append(all, b.recent[b.next:]...)
	all = append(all, b.recent[:b.next]...)
	b.mu.Unlock()
	out := all[:0]
	for _, e := range all {
		if filter == nil || filter(e) {
			out = append(out, e)
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}

// Dropped counts events lost to slow subscribers.
func (b *Bus) Dropped() uint64 { return b.dropped.Load() }
