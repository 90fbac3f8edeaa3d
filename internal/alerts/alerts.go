// Package alerts sends loadwatch events and threshold-rule breaches to
// webhooks: a generic JSON body, or ntfy-style plain text with Title,
// Priority and Tags headers. Each device is rate limited per target (a
// token bucket; what it holds back is counted in the next alert), sending
// never blocks ingest, and a test endpoint checks every target.
//
// Configuration is a JSON file (see Config and docs/INTEGRATIONS.md).
package alerts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Formats of a target.
const (
	FormatJSON = "json" // the Alert as JSON
	FormatNtfy = "ntfy" // text body; Title, Priority and Tags headers (ntfy.sh and compatible)
)

// Target is one webhook.
type Target struct {
	Name    string            `json:"name"`
	URL     string            `json:"url"`
	Format  string            `json:"format"`            // json (default) or ntfy
	Kinds   []string          `json:"kinds,omitempty"`   // event kinds and rule names to send; empty: all
	Devices []string          `json:"devices,omitempty"` // empty: all
	Headers map[string]string `json:"headers,omitempty"` // e.g. Authorization
}

// Rule fires when a field of a device's readings stays beyond a limit for
// a while, and again (resolved) when it comes back.
type Rule struct {
	Name   string   `json:"name"`
	Device string   `json:"device,omitempty"` // empty: every device
	Field  string   `json:"field"`            // power, voltage, current, frequency or pf
	Above  *float64 `json:"above,omitempty"`
	Below  *float64 `json:"below,omitempty"`
	For    Duration `json:"for,omitempty"`
}

// Duration is a time.Duration written as "5m" in JSON.
type Duration time.Duration

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("duration %q: want a non-negative Go duration such as 5m", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes d as "5m0s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// Config configures a Dispatcher; zero fields mean the documented defaults.
type Config struct {
	Targets []Target `json:"targets"`
	Rules   []Rule   `json:"rules,omitempty"`
	// Kinds are the event kinds sent when a target names none: default
	// grid_surge, overvoltage, undervoltage, frequency, relay_trip,
	// relay_latch, meter_alarm, clock_skew, offline, and every rule.
	Kinds []string `json:"kinds,omitempty"`
	// Every and Burst rate-limit each device per target: Burst alerts at
	// once, then one per Every [1m, 3].
	Every Duration `json:"every,omitempty"`
	Burst int      `json:"burst,omitempty"`
	// Timeout bounds one delivery [10s]; a failed delivery is retried
	// twice with a pause.
	Timeout Duration `json:"timeout,omitempty"`
	// Queue bounds undelivered alerts; beyond it alerts are dropped and
	// counted [256].
	Queue int `json:"queue,omitempty"`

	Client *http.Client     `json:"-"`
	Now    func() time.Time `json:"-"`
	Log    *slog.Logger     `json:"-"`
}

// DefaultKinds are sent when neither Config.Kinds nor a target's Kinds
// say otherwise.
var DefaultKinds = []string{"grid_surge", "overvoltage", "undervoltage", "frequency", "relay_trip", "relay_latch", "meter_alarm", "clock_skew", "offline"}

var fields = map[string]bool{"power": true, "voltage": true, "current": true, "frequency": true, "pf": true}

// ErrConfig wraps every configuration error.
var ErrConfig = errors.New("alerts configuration")

// Parse reads a JSON configuration and checks it.
func Parse(b []byte) (Config, error) {
	var c Config
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&c); err != nil {
		return c, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return c, c.Check()
}

// LoadFile reads a JSON configuration file.
func LoadFile(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("alerts: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Check validates targets and rules.
func (c *Config) Check() error {
	names := map[string]bool{}
	for i, t := range c.Targets {
		if t.Name == "" || names[t.Name] {
			return fmt.Errorf("%w: target %d: missing or repeated name %q", ErrConfig, i, t.Name)
		}
		names[t.Name] = true
		u, err := url.Parse(t.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: target %q: url %q: want http(s)://host/path", ErrConfig, t.Name, t.URL)
		}
		if t.Format != "" && t.Format != FormatJSON && t.Format != FormatNtfy {
			return fmt.Errorf("%w: target %q: format %q (want json or ntfy)", ErrConfig, t.Name, t.Format)
		}
		for k, v := range t.Headers {
			if k == "" || strings.ContainsAny(k+v, "\r\n") {
				return fmt.Errorf("%w: target %q: bad header %q", ErrConfig, t.Name, k)
			}
		}
	}
	rules := map[string]bool{}
	for i, r := range c.Rules {
		if r.Name == "" || rules[r.Name] || !fields[r.Field] || (r.Above == nil && r.Below == nil) {
			return fmt.Errorf("%w: rule %d (%q): want a unique name, a field (power, voltage, current, frequency or pf) and above or below", ErrConfig, i, r.Name)
		}
		rules[r.Name] = true
	}
	if c.Burst < 0 || c.Queue < 0 || c.Every < 0 || c.Timeout < 0 {
		return fmt.Errorf("%w: negative limit", ErrConfig)
	}
	return nil
}

// Alert is what a target receives (the JSON format's body).
type Alert struct {
	Source      string    `json:"source"` // always "loadwatch"
	Device      string    `json:"device"`
	Kind        string    `json:"kind"`   // event kind or rule name
	Status      string    `json:"status"` // firing or resolved
	Severity    string    `json:"severity"`
	Time        time.Time `json:"time"`
	Title       string    `json:"title"`
	Message     string    `json:"message"`
	EventSource string    `json:"event_source,omitempty"` // device or server
	Value       *float64  `json:"value,omitempty"`        // rules: the reading's value
	Suppressed  int       `json:"suppressed,omitempty"`   // alerts of this device held back by the rate limit since the last one
	Test        bool      `json:"test,omitempty"`
}

func severity(kind string) string {
	switch kind {
	case "relay_trip", "relay_latch", "overvoltage", "undervoltage":
		return "critical"
	case "grid_surge", "frequency", "meter_alarm", "offline":
		return "warning"
	}
	return "info"
}
