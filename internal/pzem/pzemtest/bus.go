package pzemtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"loadwatch/internal/modbus"
)

// Faults are the rates (0..1, per reply) at which the bus spoils a reply.
// At most one fault hits a reply; the rates must sum to at most 1.
type Faults struct {
	CRC       float64 // a CRC byte flipped: the master sees a CRC error
	Silence   float64 // no reply at all: a timeout
	Slip      float64 // one stray 0x00 byte before the reply: the master must resync
	Short     float64 // the reply cut off after 1..n-1 bytes
	Exception float64 // an exception reply "slave device failure" instead
}

func (f Faults) sum() float64 { return f.CRC + f.Silence + f.Slip + f.Short + f.Exception }

// Validate checks the rates.
func (f Faults) Validate() error {
	for _, r := range []float64{f.CRC, f.Silence, f.Slip, f.Short, f.Exception} {
		if r < 0 || r > 1 || r != r {
			return fmt.Errorf("pzemtest: fault rate %v outside 0..1", r)
		}
	}
	if f.sum() > 1 {
		return fmt.Errorf("pzemtest: fault rates sum to %v, more than 1", f.sum())
	}
	return nil
}

// ParseFaults reads "crc=0.05,silence=0.01,slip=0.02,short=0.01,exception=0.01";
// "all=R" sets every rate to R. An empty string means no faults.
func ParseFaults(s string) (Faults, error) {
	var f Faults
	if strings.TrimSpace(s) == "" {
		return f, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return f, fmt.Errorf("pzemtest: fault %q: want name=rate", kv)
		}
		r, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return f, fmt.Errorf("pzemtest: fault %q: %w", kv, err)
		}
		switch k {
		case "crc":
			f.CRC = r
		case "silence":
			f.Silence = r
		case "slip":
			f.Slip = r
		case "short":
			f.Short = r
		case "exception":
			f.Exception = r
		case "all":
			f = Faults{r, r, r, r, r}
		default:
			return f, fmt.Errorf("pzemtest: unknown fault %q (crc, silence, slip, short, exception, all)", k)
		}
	}
	return f, f.Validate()
}

// FaultCounts counts what the bus injected and served.
type FaultCounts struct {
	Requests  int // well-formed requests received
	Replies   int // replies due (before faults)
	CRC       int
	Silence   int
	Slip      int
	Short     int
	Exception int
}

// BusOpts configures a Bus. Zero fields take the defaults.
type BusOpts struct {
	Clock Clock // default SystemClock
	// LatencyMin and LatencyMax bound the uniform delay from request to
	// reply. Default 110..130 ms, as measured on real meters.
	LatencyMin, LatencyMax time.Duration
	Faults                 Faults
	Seed                   uint64 // for latency jitter and faults
}

// Default latency of a reply.
const (
	DefaultLatencyMin = 110 * time.Millisecond
	DefaultLatencyMax = 130 * time.Millisecond
)

// Bus is an RS-485/TTL line with several virtual meters on it.
type Bus struct {
	mu     sync.Mutex
	meters []*Meter
	clock  Clock
	lmin   time.Duration
	lmax   time.Duration
	faults Faults
	rng    *rand.Rand
	counts FaultCounts
}

// NewBus returns a bus with the given meters.
func NewBus(o BusOpts, meters ...*Meter) (*Bus, error) {
	if err := o.Faults.Validate(); err != nil {
		return nil, err
	}
	if o.Clock == nil {
		o.Clock = SystemClock{}
	}
	if o.LatencyMin <= 0 && o.LatencyMax <= 0 {
		o.LatencyMin, o.LatencyMax = DefaultLatencyMin, DefaultLatencyMax
	}
	if o.LatencyMax < o.LatencyMin {
		o.LatencyMax = o.LatencyMin
	}
	return &Bus{
		meters: meters, clock: o.Clock, lmin: o.LatencyMin, lmax: o.LatencyMax,
		faults: o.Faults, rng: rand.New(rand.NewPCG(o.Seed, 0x9E3779B97F4A7C15)),
	}, nil
}

// Counts returns what the bus has served and injected so far.
func (b *Bus) Counts() FaultCounts {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.counts
}

// SetFaults changes the fault rates from now on.
func (b *Bus) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	b.mu.Lock()
	b.faults = f
	b.mu.Unlock()
	return nil
}

// Meters returns the meters on the bus.
func (b *Bus) Meters() []*Meter { return b.meters }

// Handle answers one request frame at the bus's current time and returns
// the bytes to put on the line (nil: silence) and the delay before them.
func (b *Bus) Handle(req modbus.Frame) ([]byte, time.Duration) {
	now := b.clock.Now()
	var replies []modbus.Frame
	for _, m := range b.meters {
		if r, ok := m.Handle(req, now); ok {
			replies = append(replies, r)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.counts.Requests++
	lat := b.lmin
	if b.lmax > b.lmin {
		lat += time.Duration(b.rng.Int64N(int64(b.lmax - b.lmin + 1)))
	}
	if len(replies) == 0 {
		return nil, lat
	}
	b.counts.Replies++
	wire := modbus.Encode(replies[0])
	for _, r := range replies[1:] {
		// Several meters answering the general address at once collide:
		// the line carries the wired-AND of their bits.
		w := modbus.Encode(r)
		for i := range min(len(w), len(wire)) {
			wire[i] &= w[i]
		}
	}
	u := b.rng.Float64()
	f := b.faults
	if f == (Faults{}) {
		return wire, lat
	}
	switch {
	case u < f.CRC:
		b.counts.CRC++
		wire[len(wire)-2] ^= 0x5A
	case u < f.CRC+f.Silence:
		b.counts.Silence++
		return nil, lat
	case u < f.CRC+f.Silence+f.Slip:
		b.counts.Slip++
		wire = append([]byte{0x00}, wire...)
	case u < f.CRC+f.Silence+f.Slip+f.Short:
		b.counts.Short++
		wire = wire[:1+b.rng.IntN(len(wire)-1)]
	case u < f.sum():
		b.counts.Exception++
		wire = modbus.Encode(modbus.Exception(req.Addr, req.Func, modbus.SlaveDeviceFailure))
	}
	return wire, lat
}

// quietGap is how long the bus waits for the rest of a frame it cannot
// size (unknown function) before it drops the bytes.
const quietGap = 20 * time.Millisecond

// Serve reads requests from rw and writes replies until ctx is done or rw
// fails. It resyncs on bad bytes the way a meter does: a byte that cannot
// start a frame with a good CRC is dropped. Serve returns ctx.Err() when
// stopped; the caller closes rw afterwards to release the reader.
func (b *Bus) Serve(ctx context.Context, rw io.ReadWriter) error {
	chunks := make(chan []byte, 16)
	rerr := make(chan error, 1)
	go func() {
		for {
			buf := make([]byte, 256)
			n, err := rw.Read(buf)
			if n > 0 {
				select {
				case chunks <- buf[:n]:
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				rerr <- err
				return
			}
		}
	}()
	var in []byte
	var quiet <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-rerr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("pzemtest: bus read: %w", err)
		case c := <-chunks:
			in = append(in, c...)
		case <-quiet:
			in = in[:0]
		}
		quiet = nil
		for len(in) >= 2 {
			n := modbus.RequestLen(in)
			if n == 0 {
				if _, err := modbus.Decode(in); err == nil {
					n = len(in) // a whole frame of a function we do not know
				} else if k := nextRequest(in); k > 0 {
					in = in[k:] // garbage before a good request
					continue
				} else {
					quiet = time.After(quietGap)
					break
				}
			}
			if len(in) < n {
				quiet = time.After(quietGap)
				break
			}
			req, err := modbus.Decode(in[:n])
			if err != nil {
				in = in[1:]
				continue
			}
			req.Data = append([]byte(nil), req.Data...)
			in = in[n:]
			wire, lat := b.Handle(req)
			t := time.NewTimer(lat)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
			if wire != nil {
				if _, err := rw.Write(wire); err != nil {
					return fmt.Errorf("pzemtest: bus write: %w", err)
				}
			}
		}
	}
}

// nextRequest returns the offset of the first complete request with a good
// CRC after in[0], or 0 when there is none.
func nextRequest(in []byte) int {
	for k := 1; k+2 <= len(in); k++ {
		n := modbus.RequestLen(in[k:])
		if n > 0 && k+n <= len(in) && modbus.CheckCRC(in[k:k+n]) {
			return k
		}
	}
	return 0
}
