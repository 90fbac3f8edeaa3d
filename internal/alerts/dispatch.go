package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"loadwatch/internal/ingest"
)

// Dispatcher turns events into alerts and delivers them.
type Dispatcher struct {
	cfg   Config
	queue chan delivery

	mu      sync.Mutex
	buckets map[bucketKey]*bucket
	rules   map[ruleKey]*ruleState

	sent, failed, dropped, limited atomic.Uint64
}

type delivery struct {
	t Target
	a Alert
}

type bucketKey struct{ target, device string }

type bucket struct {
	tokens     float64
	at         time.Time
	suppressed int
}

type ruleKey struct{ rule, device string }

type ruleState struct {
	since  time.Time // when the breach began (zero: not breached)
	firing bool
}

// New checks cfg and returns a dispatcher; start it with Run.
func New(cfg Config) (*Dispatcher, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if cfg.Every <= 0 {
		cfg.Every = Duration(time.Minute)
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 3
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = Duration(10 * time.Second)
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 256
	}
	if len(cfg.Kinds) == 0 {
		cfg.Kinds = DefaultKinds
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Dispatcher{cfg: cfg, queue: make(chan delivery, cfg.Queue), buckets: map[bucketKey]*bucket{}, rules: map[ruleKey]*ruleState{}}, nil
}

// Stats are the dispatcher's counters.
type Stats struct{ Sent, Failed, Dropped, RateLimited uint64 }

// Stats returns the counters.
func (d *Dispatcher) Stats() Stats {
	return Stats{d.sent.Load(), d.failed.Load(), d.dropped.Load(), d.limited.Load()}
}

// wants reports whether target t takes alerts of kind for device.
func (d *Dispatcher) wants(t *Target, kind, device string, rule bool) bool {
	if len(t.Devices) > 0 && !slices.Contains(t.Devices, device) {
		return false
	}
	if len(t.Kinds) > 0 {
		return slices.Contains(t.Kinds, kind)
	}
	return rule || slices.Contains(d.cfg.Kinds, kind)
}

// Notify implements ingest.Notifier: anomalies, offline status and rule
// breaches become alerts. It never blocks.
func (d *Dispatcher) Notify(e ingest.Event) {
	switch e.Type {
	case ingest.EventAnomaly:
		a := Alert{Device: e.Device, Kind: e.Kind, Status: "firing", Time: e.Time, EventSource: e.Source,
			Title: fmt.Sprintf("%s: %s", e.Device, e.Kind), Message: e.Detail}
		if a.Message == "" {
			a.Message = e.Kind + " on " + e.Device
		}
		d.emit(a, false)
	case ingest.EventStatus:
		if e.Status == "offline" {
			d.emit(Alert{Device: e.Device, Kind: "offline", Status: "firing", Time: e.Time, Title: e.Device + " is offline",
				Message: "loadwatch received " + e.Device + "'s last will (or a clean offline status)"}, false)
		}
	case ingest.EventReading:
		d.rulesOn(e)
	}
}

func fieldOf(e *ingest.Event, f string) *float64 {
	switch f {
	case "power":
		return e.Power
	case "voltage":
		return e.Voltage
	case "current":
		return e.Current
	case "frequency":
		return e.Frequency
	case "pf":
		return e.PF
	}
	return nil
}

// rulesOn runs the threshold rules over a reading.
func (d *Dispatcher) rulesOn(e ingest.Event) {
	for i := range d.cfg.Rules {
		r := &d.cfg.Rules[i]
		if r.Device != "" && r.Device != e.Device {
			continue
		}
		v := fieldOf(&e, r.Field)
		if v == nil {
			continue
		}
		breach := r.Above != nil && *v > *r.Above || r.Below != nil && *v < *r.Below
		k := ruleKey{r.Name, e.Device}
		d.mu.Lock()
		s := d.rules[k]
		if s == nil {
			s = &ruleState{}
			d.rules[k] = s
		}
		var fire, resolve bool
		switch {
		case breach && s.since.IsZero():
			s.since = e.Time
			fire = !s.firing && r.For == 0
		case breach:
			fire = !s.firing && e.Time.Sub(s.since) >= time.Duration(r.For)
		default:
			resolve = s.firing
			s.since, s.firing = time.Time{}, false
		}
		if fire {
			s.firing = true
		}
		d.mu.Unlock()
		val := *v
		limit := ""
		if r.Above != nil {
			limit += fmt.Sprintf(" above %g", *r.Above)
		}
		if r.Below != nil {
			limit += fmt.Sprintf(" below %g", *r.Below)
		}
		switch {
		case fire:
			d.emit(Alert{Device: e.Device, Kind: r.Name, Status: "firing", Time: e.Time, Value: &val,
				Title:   fmt.Sprintf("%s: %s", e.Device, r.Name),
				Message: fmt.Sprintf("%s %s is %g,%s for %v", e.Device, r.Field, val, limit, time.Duration(r.For))}, true)
		case resolve:
			d.emit(Alert{Device: e.Device, Kind: r.Name, Status: "resolved", Time: e.Time, Value: &val,
				Title:   fmt.Sprintf("%s: %s resolved", e.Device, r.Name),
				Message: fmt.Sprintf("%s %s is back at %g", e.Device, r.Field, val)}, true)
		}
	}
}

// allow takes a token of (target, device); it returns how many alerts
// were held back before this one, or -1 when this one is held back.
func (d *Dispatcher) allow(target, device string, now time.Time) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := bucketKey{target, device}
	b := d.buckets[k]
	if b == nil {
		if len(d.buckets) > 100000 {
			clear(d.buckets)
		}
		b = &bucket{tokens: float64(d.cfg.Burst), at: now}
		d.buckets[k] = b
	}
	b.tokens = min(float64(d.cfg.Burst), b.tokens+now.Sub(b.at).Seconds()/time.Duration(d.cfg.Every).Seconds())
	b.at = now
	if b.tokens < 1 {
		b.suppressed++
		return -1
	}
	b.tokens--
	n := b.suppressed
	b.suppressed = 0
	return n
}

func (d *Dispatcher) emit(a Alert, rule bool) {
	a.Source, a.Severity = "loadwatch", severity(a.Kind)
	if a.Status == "resolved" {
		a.Severity = "info"
	}
	now := d.cfg.Now()
	for _, t := range d.cfg.Targets {
		if !d.wants(&t, a.Kind, a.Device, rule) {
			continue
		}
		n := d.allow(t.Name, a.Device, now)
		if n < 0 {
			d.limited.Add(1)
			continue
		}
		a.Suppressed = n
		select {
		case d.queue <- delivery{t, a}:
		default:
			d.dropped.Add(1)
		}
	}
}

// Run delivers queued alerts until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case x := <-d.queue:
			var err error
			for try := 0; try < 3; try++ {
				if err = d.send(ctx, x.t, x.a); err == nil {
					break
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(time.Duration(try+1) * time.Second):
				}
			}
			if err != nil {
				d.failed.Add(1)
				d.cfg.Log.Warn("alerts: delivery failed", "target", x.t.Name, "device", x.a.Device, "kind", x.a.Kind, "error", err)
			} else {
				d.sent.Add(1)
			}
		}
	}
}

// Request builds the HTTP request of an alert for a target.
func Request(ctx context.Context, t Target, a Alert) (*http.Request, error) {
	var body []byte
	var ctype string
	if t.Format == FormatNtfy {
		msg := a.Message
		if a.Suppressed > 0 {
			msg += fmt.Sprintf(" (%d more held back by the rate limit)", a.Suppressed)
		}
		body, ctype = []byte(msg), "text/plain; charset=utf-8"
	} else {
		body, _ = json.Marshal(a)
		ctype = "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("User-Agent", "loadwatch-alerts")
	if t.Format == FormatNtfy {
		prio := map[string]string{"critical": "5", "warning": "4", "info": "3"}[a.Severity]
		req.Header.Set("Title", a.Title)
		req.Header.Set("Priority", prio)
		req.Header.Set("Tags", "loadwatch,"+a.Kind+","+a.Status)
	}
	for k, v := range t.Headers {
		req.Header.Set(k, v)
	}
	return req, nil
}

func (d *Dispatcher) send(ctx context.Context, t Target, a Alert) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(d.cfg.Timeout))
	defer cancel()
	req, err := Request(ctx, t, a)
	if err != nil {
		return err
	}
	resp, err := d.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s answered %s", t.Name, resp.Status)
	}
	return nil
}

// TestResult is one target's answer to a test alert.
type TestResult struct {
	Target string `json:"target"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
}

// Test sends a test alert to every target (or the one named), at once and
// without rate limit, and reports each outcome.
func (d *Dispatcher) Test(ctx context.Context, target, user string) ([]TestResult, error) {
	out := []TestResult{}
	for _, t := range d.cfg.Targets {
		if target != "" && t.Name != target {
			continue
		}
		a := Alert{Source: "loadwatch", Device: "test", Kind: "test", Status: "firing", Severity: "info", Time: d.cfg.Now().UTC(), Test: true,
			Title: "loadwatch test alert", Message: "A test alert from loadwatch" + by(user) + ": this target works."}
		r := TestResult{Target: t.Name, OK: true}
		if err := d.send(ctx, t, a); err != nil {
			r.OK, r.Error = false, err.Error()
		}
		out = append(out, r)
	}
	if target != "" && len(out) == 0 {
		return nil, fmt.Errorf("%w: no target %q", ErrConfig, target)
	}
	return out, nil
}

func by(user string) string {
	if user == "" {
		return ""
	}
	return " (sent by " + user + ")"
}

// TestHandler serves POST with an optional body {"target": name}: it
// sends a test alert and answers the results (200 when all worked, 502
// otherwise). user names who asked (e.g. web.User); nil: nobody.
func (d *Dispatcher) TestHandler(user func(context.Context) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Target string `json:"target"`
		}
		if b, _ := io.ReadAll(io.LimitReader(r.Body, 4<<10)); len(bytes.TrimSpace(b)) > 0 {
			if err := json.Unmarshal(b, &req); err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body must be {\"target\": name} or empty"})
				return
			}
		}
		u := ""
		if user != nil {
			u = user(r.Context())
		}
		res, err := d.Test(r.Context(), req.Target, u)
		if errors.Is(err, ErrConfig) {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
			return
		}
		code := http.StatusOK
		for _, x := range res {
			if !x.OK {
				code = http.StatusBadGateway
			}
		}
		w.Header().Set("X-Targets", strconv.Itoa(len(res)))
		writeJSON(w, code, res)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
