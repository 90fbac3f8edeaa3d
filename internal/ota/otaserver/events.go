package otaserver

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"sync"
	"time"
)

// Kind of an OTA event.
type Kind string

// Event kinds: a device checked for an update, downloaded (part of) a
// binary, applied it, and reported the result after its health check.
const (
	KindCheck    Kind = "check"
	KindDownload Kind = "download"
	KindApply    Kind = "apply"
	KindResult   Kind = "result"
	KindRefused  Kind = "refused" // the device refused a release (bad signature, ...)
)

// Event is one recorded OTA step of one device.
type Event struct {
	Time     time.Time `json:"time"`
	Device   string    `json:"device"`
	Kind     Kind      `json:"kind"`
	Channel  string    `json:"channel,omitempty"`
	Platform string    `json:"platform,omitempty"`
	Running  string    `json:"running,omitempty"` // version the device runs
	Version  string    `json:"version,omitempty"` // version concerned (offered, downloaded, applied)
	OK       *bool     `json:"ok,omitempty"`
	Detail   string    `json:"detail,omitempty"`
	Offset   int64     `json:"offset,omitempty"` // download: first byte (a resumed download has > 0)
	Bytes    int64     `json:"bytes,omitempty"`  // download: bytes sent
}

// DeviceStatus is the latest OTA state of one device.
type DeviceStatus struct {
	Device     string    `json:"device"`
	Running    string    `json:"running,omitempty"`
	Channel    string    `json:"channel,omitempty"`
	Platform   string    `json:"platform,omitempty"`
	LastSeen   time.Time `json:"last_seen"`
	Offered    string    `json:"offered,omitempty"`
	LastResult *Event    `json:"last_result,omitempty"`
	Downloads  int       `json:"downloads"`
	Events     int       `json:"events"`
}

// Recorder records OTA events. The registry may implement it later; Log
// is the built-in one.
type Recorder interface {
	Record(ctx context.Context, e Event) error
}

// StatusSource reports per-device status and recent events.
type StatusSource interface {
	Status(ctx context.Context) ([]DeviceStatus, error)
	Events(ctx context.Context, device string, limit int) ([]Event, error)
}

// Log keeps the latest status per device and the most recent events in
// memory, and appends every event as a JSON line to a file when given
// one (reloaded by OpenLog).
type Log struct {
	mu      sync.Mutex
	devices map[string]*DeviceStatus
	events  []Event
	keep    int
	file    *os.File
}

// NewLog returns an in-memory log keeping the last keep events (0: 10000).
func NewLog(keep int) *Log {
	if keep <= 0 {
		keep = 10000
	}
	return &Log{devices: map[string]*DeviceStatus{}, keep: keep}
}

// OpenLog is NewLog backed by an append-only JSON-lines file, whose
// existing events are replayed first.
func OpenLog(path string, keep int) (*Log, error) {
	l := NewLog(keep)
	f, err := os.Open(path)
	if err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var e Event
			if json.Unmarshal(sc.Bytes(), &e) == nil && e.Device != "" {
				l.apply(e)
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("otaserver: read %s: %w", path, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("otaserver: %w", err)
	}
	l.file, err = os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("otaserver: %w", err)
	}
	return l, nil
}

// Close closes the backing file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file == nil {
		return nil
	}
	err := l.file.Close()
	l.file = nil
	return err
}

func (l *Log) apply(e Event) {
	d := l.devices[e.Device]
	if d == nil {
		d = &DeviceStatus{Device: e.Device}
		l.devices[e.Device] = d
	}
	d.Events++
	if e.Time.After(d.LastSeen) {
		d.LastSeen = e.Time
	}
	if e.Running != "" {
		d.Running = e.Running
	}
	if e.Channel != "" {
		d.Channel, d.Platform = e.Channel, e.Platform
	}
	switch e.Kind {
	case KindCheck:
		d.Offered = e.Version
	case KindDownload:
		d.Downloads++
	case KindResult, KindRefused:
		ev := e
		d.LastResult = &ev
	}
	l.events = append(l.events, e)
	if len(l.events) > l.keep {
		l.events = append(l.events[:0], l.events[len(l.events)-l.keep:]...)
	}
}

// Record implements Recorder.
func (l *Log) Record(_ context.Context, e Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.apply(e)
	if l.file != nil {
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if _, err := l.file.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("otaserver: record: %w", err)
		}
	}
	return nil
}

// Status implements StatusSource, sorted by device id.
func (l *Log) Status(context.Context) ([]DeviceStatus, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]DeviceStatus, 0, len(l.devices))
	for _, d := range l.devices {
		c := *d
		if d.LastResult != nil {
			r := *d.LastResult
			c.LastResult = &r
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Device < out[j].Device })
	return out, nil
}

// Events implements StatusSource: the device's (or everyone's, for "")
// most recent events, oldest first, at most limit (0: all kept).
func (l *Log) Events(_ context.Context, device string, limit int) ([]Event, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Event
	for i := len(l.events) - 1; i >= 0 && (limit <= 0 || len(out) < limit); i-- {
		if device == "" || l.events[i].Device == device {
			out = append(out, l.events[i])
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}
