package api

import (
	"net/http"
	"sort"
	"strconv"
	"time"

	"loadwatch/internal/ingest"
	"loadwatch/internal/power"
	"loadwatch/internal/registry"
	"loadwatch/internal/telemetry"
)

// DeviceJSON is one device of GET /api/v1/devices. A quantity the device
// never reported is null.
type DeviceJSON struct {
	ID     string `json:"id"`
	Online bool   `json:"online"` // false only when State is offline
	State  string `json:"state"`  // online, asleep or offline
	// The newest reading.
	Power        *float64 `json:"power"`
	Voltage      *float64 `json:"voltage"`
	Current      *float64 `json:"current"`
	Frequency    *float64 `json:"frequency"`
	PF           *float64 `json:"pf"`
	EnergyJoules *float64 `json:"energy_joules"`
	Class        string   `json:"class"`
	Confidence   *float64 `json:"confidence"`
	ReadingTime  *string  `json:"reading_time"`
	Seq          uint64   `json:"seq,omitempty"`
	// LastSeen is the receive time of the device's last message (RFC 3339),
	// or of its registry entry's last connection; null when never seen.
	LastSeen   *string  `json:"last_seen"`
	Firmware   string   `json:"firmware,omitempty"`
	Registered bool     `json:"registered"`
	Revoked    bool     `json:"revoked,omitempty"`
	Readings   uint64   `json:"readings"`           // stored since the server started
	ClockSkew  *float64 `json:"clock_skew_seconds"` // reading time minus receive time of the last live reading
	Addrs      []int    `json:"addrs,omitempty"`    // registered meter addresses
	Tasmota    string   `json:"tasmota_topic,omitempty"`
	// Link are the meter link counters by meter address ("1".."247") from
	// the device's newest status that carried them, counted by the agent
	// since it started; absent when unknown. LinkTime is when that status
	// arrived.
	Link     map[string]LinkJSON `json:"link,omitempty"`
	LinkTime *string             `json:"link_time,omitempty"`
}

// LinkJSON are the link counters of one meter address (see
// telemetry.LinkCounters).
type LinkJSON struct {
	Requests      uint64  `json:"requests"`
	Replies       uint64  `json:"replies"`
	CRCErrors     uint64  `json:"crc_errors"`
	Timeouts      uint64  `json:"timeouts"`
	Exceptions    uint64  `json:"exceptions"`
	ShortFrames   uint64  `json:"short_frames"`
	Resyncs       uint64  `json:"resyncs"`
	Retries       uint64  `json:"retries"`
	Other         uint64  `json:"other"`
	LastLatencyMS float64 `json:"last_latency_ms"`
}

func linkJSON(link map[uint8]telemetry.LinkCounters) map[string]LinkJSON {
	if len(link) == 0 {
		return nil
	}
	out := make(map[string]LinkJSON, len(link))
	for a, c := range link {
		out[strconv.Itoa(int(a))] = LinkJSON{
			Requests: c.Requests, Replies: c.Replies, CRCErrors: c.CRCErrors, Timeouts: c.Timeouts,
			Exceptions: c.Exceptions, ShortFrames: c.ShortFrames, Resyncs: c.Resyncs, Retries: c.Retries,
			Other: c.Other, LastLatencyMS: float64(c.LastLatency) / float64(time.Millisecond),
		}
	}
	return out
}

func f64(v float64) *float64 { return &v }

func rfc3339(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(time.RFC3339Nano)
	return &s
}

func (a *API) deviceJSON(d ingest.Device, reg *registry.Device, now time.Time) DeviceJSON {
	out := DeviceJSON{ID: d.ID, Firmware: d.Firmware, Readings: d.Readings, Seq: d.Seq}
	// The state comes from what ingest saw (messages, status, last will);
	// the registry's last-seen time (connections, also of other server
	// processes) only stands in when ingest has seen nothing since start.
	state := d
	if reg != nil {
		out.Registered = true
		out.Revoked = !reg.Revoked.IsZero()
		out.Addrs, out.Tasmota = reg.Addrs, reg.TasmotaTopic
		if state.LastSeen.IsZero() {
			state.LastSeen = reg.LastSeen
		}
		if reg.LastSeen.After(d.LastSeen) {
			d.LastSeen = reg.LastSeen
		}
		if out.Firmware == "" {
			out.Firmware = reg.Firmware
		}
	}
	st := state.StateAt(now, a.cfg.OnlineWindow, a.cfg.OfflineAfter)
	out.State, out.Online = string(st), st != ingest.StateOffline
	out.LastSeen = rfc3339(d.LastSeen)
	if d.HasReading {
		r := &d.Reading
		opt := func(f power.Field, v float64) *float64 {
			if r.Is(f) {
				return f64(v)
			}
			return nil
		}
		out.Power = opt(power.FieldPower, float64(r.Power))
		out.Voltage = opt(power.FieldVoltage, float64(r.Voltage))
		out.Current = opt(power.FieldCurrent, float64(r.Current))
		out.Frequency = opt(power.FieldFrequency, float64(r.Frequency))
		out.PF = opt(power.FieldPF, float64(r.PF))
		out.ReadingTime = rfc3339(r.Time)
	}
	if d.HasEnergy {
		out.EnergyJoules = f64(d.Energy.Joules())
	}
	if d.Classified {
		out.Class, out.Confidence = d.Class, f64(d.Confidence)
	}
	if d.HasSkew {
		out.ClockSkew = f64(d.ClockSkew.Seconds())
	}
	if out.Link = linkJSON(d.Link); out.Link != nil {
		out.LinkTime = rfc3339(d.LinkAt)
	}
	return out
}

// list merges the live table with the registry: a registered device that
// has not reported since the server started is listed too.
func (a *API) list(r *http.Request) ([]DeviceJSON, error) {
	now := a.cfg.Now()
	live := a.cfg.Devices.Devices()
	regs := map[string]*registry.Device{}
	if a.cfg.Registry != nil {
		rs, err := a.cfg.Registry.List(r.Context())
		if err != nil {
			return nil, err
		}
		for i := range rs {
			regs[rs[i].ID] = &rs[i]
		}
	}
	out := make([]DeviceJSON, 0, len(live)+len(regs))
	seen := map[string]bool{}
	for _, d := range live {
		seen[d.ID] = true
		out = append(out, a.deviceJSON(d, regs[d.ID], now))
	}
	for id, reg := range regs {
		if !seen[id] {
			out = append(out, a.deviceJSON(ingest.Device{ID: id}, reg, now))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (a *API) devices(w http.ResponseWriter, r *http.Request) {
	out, err := a.list(r)
	if err != nil {
		a.cfg.Log.Error("api: list devices", "error", err)
		writeError(w, http.StatusInternalServerError, "cannot list devices")
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) device(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	out, err := a.list(r)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "cannot list devices")
		return
	}
	for _, d := range out {
		if d.ID == id {
			writeJSON(w, http.StatusOK, d)
			return
		}
	}
	writeError(w, http.StatusNotFound, "no device "+id)
}
