package ingest

import (
	"sort"
	"strings"
	"sync"
	"time"

	"loadwatch/internal/anomaly"
	"loadwatch/internal/features"
	"loadwatch/internal/ledger"
	"loadwatch/internal/power"
	"loadwatch/internal/telemetry"
)

// device is the per-device state; mu guards everything below it.
type device struct {
	id string
	mu sync.Mutex

	seen     *seqSet
	ext      *features.Extractor
	extSet   string
	vec      []float32
	agentVec []float32
	anom     *anomaly.Detector
	ledger   *ledger.Ledger // only for sources that send a raw counter

	tokens   float64
	bucketAt time.Time

	lastSeen   time.Time // receive time of the last message
	last       result    // the newest reading
	hasLast    bool
	readings   uint64
	status     telemetry.StatusState
	statusAt   time.Time
	firmware   string
	skew       time.Duration
	hasSkew    bool
	skewed     bool
	lastReadAt time.Time                        // receive time of the newest reading
	link       map[uint8]telemetry.LinkCounters // from the last status that had them; replaced, never changed
	linkAt     time.Time                        // receive time of that status
}

// update records r as the device's latest reading (if it is not older
// than the one shown); d.mu is held.
func (d *device) update(r result, now time.Time) {
	d.lastSeen, d.lastReadAt = now, now
	d.readings++
	if !d.hasLast || !r.reading.Time.Before(d.last.reading.Time) {
		d.last, d.hasLast = r, true
	}
}

// observeLink keeps the link counters of a status that has them (a last
// will or a status without counters leaves the known ones); d.mu is held.
func (d *device) observeLink(s *telemetry.Status, now time.Time) {
	if s.Link != nil {
		d.link, d.linkAt = s.Link, now
	}
}

// State says whether a device is connected.
type State string

// The device states of GET /api/v1/devices.
const (
	StateOnline  State = "online"  // heard from within OnlineWindow
	StateAsleep  State = "asleep"  // duty-cycled: quiet, but within OfflineAfter and no "offline" status
	StateOffline State = "offline" // last will received, or quiet for longer than OfflineAfter
)

// Device is the latest known state of one device, as ingest saw it.
type Device struct {
	ID         string
	LastSeen   time.Time // receive time of the last message of any kind
	Reading    power.Reading
	HasReading bool
	Seq        uint64
	Epoch      string
	Energy     power.WattHours // ledger total
	HasEnergy  bool
	Class      string
	Confidence float64
	Classified bool
	Readings   uint64 // stored since this server started
	Status     telemetry.StatusState
	StatusAt   time.Time
	Firmware   string
	ClockSkew  time.Duration // reading time minus receive time of the last live reading
	HasSkew    bool
	// Link are the meter link counters by meter address from the newest
	// status that carried them (nil: none yet); LinkAt is when that status
	// arrived. The map is shared: do not change it.
	Link   map[uint8]telemetry.LinkCounters
	LinkAt time.Time
}

// StateAt classifies the device at now: online when heard from within
// online, offline when its last status was "offline" (a last will) after
// its last message or when it has been quiet longer than offline, asleep
// otherwise.
func (d *Device) StateAt(now time.Time, online, offline time.Duration) State {
	switch {
	case d.Status == telemetry.StatusOffline && !d.StatusAt.Before(d.LastSeen):
		return StateOffline
	case d.LastSeen.IsZero() || now.Sub(d.LastSeen) > offline:
		return StateOffline
	case now.Sub(d.LastSeen) <= online:
		return StateOnline
	}
	return StateAsleep
}

func (d *device) snapshot() Device {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := Device{
		ID: d.id, LastSeen: d.lastSeen, Readings: d.readings, Status: d.status, StatusAt: d.statusAt,
		Firmware: d.firmware, ClockSkew: d.skew, HasSkew: d.hasSkew, Link: d.link, LinkAt: d.linkAt,
	}
	if d.hasLast {
		l := &d.last
		s.Reading, s.HasReading, s.Seq, s.Epoch = l.reading, true, l.seq, l.epoch
		s.Energy, s.HasEnergy = l.total, l.hasTotal
		s.Class, s.Confidence, s.Classified = l.class, l.conf, l.classified
	}
	return s
}

// Devices returns the state of every device ingest has heard from, by id.
func (p *Pipeline) Devices() []Device {
	var out []Device
	p.devs.Range(func(_, v any) bool {
		out = append(out, v.(*device).snapshot())
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Device returns the state of one device, and false if ingest has not
// heard from it.
func (p *Pipeline) Device(id string) (Device, bool) {
	v, ok := p.devs.Load(id)
	if !ok {
		return Device{}, false
	}
	return v.(*device).snapshot(), true
}

// Forget drops the state of a device and of its meters "<id>.<addr>"
// (after it was deleted from the registry).
func (p *Pipeline) Forget(id string) {
	p.devs.Range(func(k, _ any) bool {
		if d := k.(string); d == id || strings.HasPrefix(d, id+".") {
			p.devs.Delete(k)
		}
		return true
	})
}

// seqSet remembers the (epoch, seq) of recent readings of one device: for
// each of its last maxEpochs epochs, which of the window sequence numbers
// up to the highest seen were stored, one bit each (1 KiB for the default
// 8,192). Sequence numbers grow by one a reading (the agent's outbox), so
// the window covers the last window readings of an epoch: 11 h at 5 s. It
// is bounded: older readings and the oldest epochs are forgotten (a replay
// that old is still harmless: the store takes an identical sample again
// without a second copy). An exact set of keys, as it was before, held
// about 70 bytes a reading: 5.7 GB once 10,000 devices had sent 8,192 each.
type seqSet struct {
	window uint64 // bits per epoch, a multiple of 64
	eps    []seqEpoch
	tick   uint64 // use counter for the least recently used epoch
}

// maxEpochs is how many epochs of one device are remembered (an agent
// starts a new one when its outbox is recreated; a replay after a restart
// carries the old one).
const maxEpochs = 4

type seqEpoch struct {
	epoch string
	hi    uint64   // highest seq seen
	bits  []uint64 // seq s at bit s mod window, for hi-window < s <= hi
	used  uint64
}

func newSeqSet(n int) *seqSet {
	w := (uint64(max(n, 1)) + 63) / 64 * 64
	return &seqSet{window: w}
}

func (s *seqSet) find(epoch string) *seqEpoch {
	for i := range s.eps {
		if s.eps[i].epoch == epoch {
			return &s.eps[i]
		}
	}
	return nil
}

func (s *seqSet) has(epoch string, seq uint64) bool {
	e := s.find(epoch)
	if e == nil || seq > e.hi || e.hi-seq >= s.window {
		return false
	}
	b := seq % s.window
	return e.bits[b/64]&(1<<(b%64)) != 0
}

func (s *seqSet) add(epoch string, seq uint64) {
	s.tick++
	e := s.find(epoch)
	if e == nil {
		if len(s.eps) < maxEpochs {
			s.eps = append(s.eps, seqEpoch{})
			e = &s.eps[len(s.eps)-1]
		} else {
			e = &s.eps[0]
			for i := range s.eps {
				if s.eps[i].used < e.used {
					e = &s.eps[i]
				}
			}
		}
		bits := e.bits
		if bits == nil {
			bits = make([]uint64, s.window/64)
		} else {
			clear(bits)
		}
		// The epoch may point into a decoded payload: keep a copy of its own.
		*e = seqEpoch{epoch: strings.Clone(epoch), hi: seq, bits: bits}
	}
	e.used = s.tick
	switch {
	case seq > e.hi && seq-e.hi >= s.window:
		clear(e.bits)
		e.hi = seq
	case seq > e.hi:
		for x := e.hi + 1; x < seq; x++ { // forget what the window moves past
			b := x % s.window
			e.bits[b/64] &^= 1 << (b % 64)
		}
		e.hi = seq
	case e.hi-seq >= s.window:
		return // older than the window: not remembered
	}
	b := seq % s.window
	e.bits[b/64] |= 1 << (b % 64)
}
