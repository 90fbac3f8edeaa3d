// Package hass announces loadwatch devices to Home Assistant through MQTT
// discovery, so that each device appears with power, voltage, current,
// power factor, frequency, energy (device_class energy, state_class
// total_increasing, fed from the reset-proof ledger total, so Home
// Assistant's Energy dashboard takes it as is), the current appliance class
// and the relay as a switch, with no YAML.
//
// The Bridge is an ingest notifier: it keeps each device's newest values
// and publishes them, retained, as one JSON state per device on
// <StatePrefix>/<device>/state; every entity reads its field with a
// value_template. The relay switch publishes loadwatch's own command
// payloads straight to loadwatch/v1/<device>/cmd, so the agent acks them as
// usual and the ack updates the switch's state.
package hass

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"loadwatch/internal/ingest"
	"loadwatch/internal/telemetry"
)

// Publisher sends MQTT messages (the embedded broker or the external
// broker's client implement it).
type Publisher interface {
	Publish(topic string, payload []byte, retain bool, qos byte) error
}

// Config configures a Bridge. Zero fields mean the documented defaults.
type Config struct {
	Pub Publisher // required
	// DiscoveryPrefix is Home Assistant's discovery prefix ["homeassistant"].
	DiscoveryPrefix string
	// StatePrefix is where the states go ["loadwatch/hass"].
	StatePrefix string
	// MinInterval is the shortest time between two state messages of one
	// device; a change of class or relay is sent at once [5 s].
	MinInterval time.Duration
	// MaxDevices bounds the devices the bridge keeps state for; events
	// of further devices are ignored [65536].
	MaxDevices int
	Now        func() time.Time
	Log        *slog.Logger
}

// State is what the bridge publishes for one device. A field never
// reported is left out, so Home Assistant shows it as unknown.
type State struct {
	Power      *float64 `json:"power,omitempty"`
	Voltage    *float64 `json:"voltage,omitempty"`
	Current    *float64 `json:"current,omitempty"`
	PF         *float64 `json:"pf,omitempty"`
	Frequency  *float64 `json:"frequency,omitempty"`
	EnergyKWh  *float64 `json:"energy_kwh,omitempty"`
	Class      string   `json:"class,omitempty"`
	Confidence *float64 `json:"confidence,omitempty"`
	Relay      string   `json:"relay,omitempty"` // closed, open, tripped, latched
	Firmware   string   `json:"firmware,omitempty"`
	Updated    string   `json:"updated"`
}

type devState struct {
	st         State
	announced  bool
	firmware   string // announced with this firmware
	lastSent   time.Time
	pending    bool
	urgent     bool
	online     string // "online"/"offline" last published
	wantOnline string
}

// Bridge keeps the devices' states and publishes them.
type Bridge struct {
	cfg  Config
	mu   sync.Mutex
	devs map[string]*devState
	wake chan struct{}
}

// New returns a bridge; start it with Run.
func New(cfg Config) *Bridge {
	if cfg.DiscoveryPrefix == "" {
		cfg.DiscoveryPrefix = "homeassistant"
	}
	if cfg.StatePrefix == "" {
		cfg.StatePrefix = "loadwatch/hass"
	}
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = 5 * time.Second
	}
	if cfg.MaxDevices <= 0 {
		cfg.MaxDevices = 65536
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Bridge{cfg: cfg, devs: map[string]*devState{}, wake: make(chan struct{}, 1)}
}

func (b *Bridge) dev(id string) *devState {
	d := b.devs[id]
	if d == nil {
		if len(b.devs) >= b.cfg.MaxDevices {
			return nil
		}
		d = &devState{}
		b.devs[id] = d
	}
	return d
}

// Notify implements ingest.Notifier; it never blocks.
func (b *Bridge) Notify(e ingest.Event) {
	if telemetry.ValidateDeviceID(e.Device) != nil {
		return
	}
	b.mu.Lock()
	d := b.dev(e.Device)
	if d == nil {
		b.mu.Unlock()
		return
	}
	s := &d.st
	switch e.Type {
	case ingest.EventReading:
		set := func(dst **float64, v *float64) {
			if v != nil {
				x := *v
				*dst = &x
			}
		}
		set(&s.Power, e.Power)
		set(&s.Voltage, e.Voltage)
		set(&s.Current, e.Current)
		set(&s.PF, e.PF)
		set(&s.Frequency, e.Frequency)
		if e.EnergyJoules != nil {
			kwh := *e.EnergyJoules / 3.6e6
			s.EnergyKWh = &kwh
		}
		if e.Class != "" {
			d.urgent = d.urgent || e.Class != s.Class
			s.Class = e.Class
			set(&s.Confidence, e.Confidence)
		}
		d.wantOnline = "online"
	case ingest.EventAck:
		if e.Ack == nil || !e.Ack.OK || e.Ack.State == "" {
			b.mu.Unlock()
			return
		}
		d.urgent = d.urgent || s.Relay != e.Ack.State
		s.Relay = e.Ack.State
	case ingest.EventAnomaly:
		st := map[string]string{string(telemetry.EventRelayTrip): "tripped", string(telemetry.EventRelayLatch): "latched",
			string(telemetry.EventRelayReset): "closed", string(telemetry.EventRelayRecover): "closed"}[e.Kind]
		if st == "" || e.Source != ingest.SourceDevice {
			b.mu.Unlock()
			return
		}
		d.urgent, s.Relay = true, st
	case ingest.EventStatus:
		if e.Firmware != "" {
			s.Firmware = e.Firmware
		}
		d.wantOnline = "online"
		if e.Status == string(telemetry.StatusOffline) {
			d.wantOnline = "offline"
		}
		d.urgent = true
	default:
		b.mu.Unlock()
		return
	}
	d.pending = true
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Run publishes discovery and states until ctx ends.
func (b *Bridge) Run(ctx context.Context) error {
	tick := time.NewTicker(b.cfg.MinInterval / 5)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-b.wake:
		case <-tick.C:
		}
		b.flush()
	}
}

type msg struct {
	topic   string
	payload []byte
	qos     byte
}

// flush publishes what is due; the lock is not held while publishing.
func (b *Bridge) flush() {
	now := b.cfg.Now()
	var out []msg
	b.mu.Lock()
	for id, d := range b.devs {
		if !d.pending || !d.urgent && now.Sub(d.lastSent) < b.cfg.MinInterval {
			continue
		}
		if !d.announced || d.firmware != d.st.Firmware {
			for _, m := range Discovery(id, d.st.Firmware, b.cfg.DiscoveryPrefix, b.cfg.StatePrefix) {
				out = append(out, msg{m.Topic, m.Payload, 1})
			}
			d.announced, d.firmware = true, d.st.Firmware
		}
		if d.wantOnline != "" && d.wantOnline != d.online {
			out = append(out, msg{AvailabilityTopic(b.cfg.StatePrefix, id), []byte(d.wantOnline), 1})
			d.online = d.wantOnline
		}
		d.st.Updated = now.UTC().Format(time.RFC3339)
		p, _ := json.Marshal(d.st)
		out = append(out, msg{StateTopic(b.cfg.StatePrefix, id), p, 0})
		d.pending, d.urgent, d.lastSent = false, false, now
	}
	b.mu.Unlock()
	for _, m := range out {
		if err := b.cfg.Pub.Publish(m.topic, m.payload, true, m.qos); err != nil {
			b.cfg.Log.Warn("hass: publish failed", "topic", m.topic, "error", err)
		}
	}
}

// StateTopic is where a device's state goes.
func StateTopic(prefix, device string) string { return prefix + "/" + device + "/state" }

// AvailabilityTopic carries "online" or "offline" for a device.
func AvailabilityTopic(prefix, device string) string { return prefix + "/" + device + "/availability" }
