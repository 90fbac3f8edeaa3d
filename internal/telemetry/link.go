package telemetry

import (
	"encoding/json"
	"math"
	"sort"
	"strconv"
	"time"
)

// LinkCounters are the serial-link counters of one meter address, as the
// agent's meter driver keeps them since the agent started. Every request
// ends in exactly one of Replies, CRCErrors, ShortFrames, Timeouts,
// Exceptions or Other; Retries counts the requests after the first of an
// exchange and Resyncs the good replies that needed stray bytes skipped.
type LinkCounters struct {
	Requests    uint64
	Replies     uint64
	CRCErrors   uint64
	Timeouts    uint64
	Exceptions  uint64
	ShortFrames uint64
	Resyncs     uint64
	Retries     uint64
	Other       uint64
	LastLatency time.Duration // of the last good reply; 0 before the first
}

// Bounds of the link object: a counter above MaxLinkCount (2^53, the
// largest integer a JSON reader keeps exactly) or a latency above
// MaxLinkLatency is refused as out of range.
const (
	MaxLinkCount   = 1 << 53
	MaxLinkLatency = time.Minute
)

// linkNames are the wire names of the counters, in wire order.
var linkNames = [...]string{"requests", "replies", "crc_errors", "timeouts", "exceptions", "short_frames", "resyncs", "retries", "other"}

func (c *LinkCounters) fields() [len(linkNames)]*uint64 {
	return [...]*uint64{&c.Requests, &c.Replies, &c.CRCErrors, &c.Timeouts, &c.Exceptions, &c.ShortFrames, &c.Resyncs, &c.Retries, &c.Other}
}

// appendLink appends `,"link":{...}` for a non-empty map, addresses in
// ascending order.
func appendLink(b []byte, link map[uint8]LinkCounters) []byte {
	if len(link) == 0 {
		return b
	}
	addrs := make([]int, 0, len(link))
	for a := range link {
		addrs = append(addrs, int(a))
	}
	sort.Ints(addrs)
	b = append(b, `,"link":{`...)
	for i, a := range addrs {
		if i > 0 {
			b = append(b, ',')
		}
		c := link[uint8(a)]
		b = append(b, '"')
		b = strconv.AppendInt(b, int64(a), 10)
		b = append(b, `":{`...)
		for j, p := range c.fields() {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = append(b, linkNames[j]...)
			b = append(b, `":`...)
			b = strconv.AppendUint(b, *p, 10)
		}
		b = append(b, `,"last_latency_ms":`...)
		b = strconv.AppendFloat(b, float64(c.LastLatency)/float64(time.Millisecond), 'f', -1, 64)
		b = append(b, '}')
	}
	return append(b, '}')
}

// optLink is the "link" member: an object of objects keyed by address.
type optLink struct {
	v   map[string]json.RawMessage
	set bool
	bad Reason
}

func (o *optLink) UnmarshalJSON(b []byte) error {
	o.set = true
	if len(b) == 0 || b[0] != '{' {
		o.bad = ReasonBadType
		return nil
	}
	if err := json.Unmarshal(b, &o.v); err != nil {
		o.bad = ReasonBadType
	}
	return nil
}

type wireLinkCounters struct {
	Requests    optInt   `json:"requests"`
	Replies     optInt   `json:"replies"`
	CRCErrors   optInt   `json:"crc_errors"`
	Timeouts    optInt   `json:"timeouts"`
	Exceptions  optInt   `json:"exceptions"`
	ShortFrames optInt   `json:"short_frames"`
	Resyncs     optInt   `json:"resyncs"`
	Retries     optInt   `json:"retries"`
	Other       optInt   `json:"other"`
	LatencyMS   optFloat `json:"last_latency_ms"`
}

// decodeLink validates the link member: keys are meter addresses 1..247
// written in plain decimal, a missing counter is 0, every counter is an
// integer in 0..MaxLinkCount and at most requests, the latency is a number
// of milliseconds in 0..MaxLinkLatency. A missing member is nil.
func decodeLink(o *optLink) (map[uint8]LinkCounters, error) {
	if !o.set {
		return nil, nil
	}
	if o.bad != "" {
		return nil, fieldErr(o.bad, "link", -1)
	}
	out := make(map[uint8]LinkCounters, len(o.v))
	for k, raw := range o.v {
		a, err := strconv.Atoi(k)
		if err != nil || strconv.Itoa(a) != k || a < 1 || a > 247 {
			return nil, fieldErr(ReasonBadValue, "link", -1)
		}
		name := "link." + k
		if len(raw) == 0 || raw[0] != '{' {
			return nil, fieldErr(ReasonBadType, name, -1)
		}
		var w wireLinkCounters
		if err := json.Unmarshal(raw, &w); err != nil {
			return nil, &Error{Reason: ReasonBadType, Field: name, Index: -1, Err: err}
		}
		var c LinkCounters
		ws := [...]*optInt{&w.Requests, &w.Replies, &w.CRCErrors, &w.Timeouts, &w.Exceptions, &w.ShortFrames, &w.Resyncs, &w.Retries, &w.Other}
		for i, p := range c.fields() {
			f := ws[i]
			if !f.set {
				continue
			}
			if f.bad != "" {
				return nil, fieldErr(f.bad, name+"."+linkNames[i], -1)
			}
			if f.v < 0 || f.v > MaxLinkCount {
				return nil, fieldErr(ReasonOutOfRange, name+"."+linkNames[i], -1)
			}
			*p = uint64(f.v)
		}
		for i, p := range c.fields() {
			if i > 0 && *p > c.Requests {
				return nil, fieldErr(ReasonOutOfRange, name+"."+linkNames[i], -1)
			}
		}
		if w.LatencyMS.set {
			if w.LatencyMS.bad != "" {
				return nil, fieldErr(w.LatencyMS.bad, name+".last_latency_ms", -1)
			}
			ms := w.LatencyMS.v
			if err := checkFloat(ms, 0, float64(MaxLinkLatency/time.Millisecond), name+".last_latency_ms", -1); err != nil {
				return nil, err
			}
			c.LastLatency = time.Duration(math.Round(ms * float64(time.Millisecond)))
		}
		out[uint8(a)] = c
	}
	return out, nil
}
