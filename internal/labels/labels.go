// Package labels keeps labelled time spans of device streams ("kettle"
// from 10:02 to 10:05 on device kitchen) and retrains the appliance model
// from them: a background job reads the stored readings of every span,
// adds the bundled training data, trains a new forest with progress,
// evaluates it against the model in use on held-out data, and activates it
// through the classify holder on confirmation (the old model is kept for
// rollback). See docs/DASHBOARD.md.
package labels

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"crypto/rand"
	"encoding/base64"
)

// Errors of the span store.
var (
	ErrInvalid  = errors.New("invalid label")
	ErrNotFound = errors.New("no such label")
)

// Span is one labelled time span of a device.
type Span struct {
	ID      string    `json:"id"`
	Device  string    `json:"device"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Label   string    `json:"label"` // class name; several appliances joined by "+"
	User    string    `json:"user,omitempty"`
	Created time.Time `json:"created"`
}

// Limits of a span.
const (
	MaxLabelLen = 64
	MaxSpan     = 7 * 24 * time.Hour
	MaxSpans    = 10000
)

// ValidLabel checks a label: lower-case words of [a-z0-9_] joined by "+"
// ("kettle", "laptop+printer").
func ValidLabel(s string) error {
	if s == "" || len(s) > MaxLabelLen {
		return fmt.Errorf("%w: label %q: want 1 to %d characters", ErrInvalid, s, MaxLabelLen)
	}
	word := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_':
			word++
		case c == '+' && word > 0:
			word = 0
		default:
			return fmt.Errorf("%w: label %q: want words of a-z, 0-9 and _ joined by +", ErrInvalid, s)
		}
	}
	if word == 0 {
		return fmt.Errorf("%w: label %q ends with +", ErrInvalid, s)
	}
	return nil
}

// Store keeps spans in a JSON file, rewritten atomically on each change.
type Store struct {
	path string
	now  func() time.Time
	mu   sync.Mutex
	sp   []Span
}

// Open loads (or starts) the span file at path.
func Open(path string, now func() time.Time) (*Store, error) {
	if now == nil {
		now = time.Now
	}
	s := &Store{path: path, now: now}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("labels: %w", err)
	}
	if err := json.Unmarshal(b, &s.sp); err != nil {
		return nil, fmt.Errorf("labels: %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) save() error {
	b, err := json.MarshalIndent(s.sp, "", " ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
		return fmt.Errorf("labels: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), ".labels-*.tmp")
	if err != nil {
		return fmt.Errorf("labels: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(b)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("labels: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("labels: %w", err)
	}
	return nil
}

// Add validates and stores a span; ID and Created are set.
func (s *Store) Add(sp Span) (Span, error) {
	if err := ValidLabel(sp.Label); err != nil {
		return Span{}, err
	}
	if sp.Device == "" || len(sp.Device) > 80 {
		return Span{}, fmt.Errorf("%w: no device", ErrInvalid)
	}
	if !sp.To.After(sp.From) || sp.To.Sub(sp.From) > MaxSpan {
		return Span{}, fmt.Errorf("%w: span must end after it starts and last at most %v", ErrInvalid, MaxSpan)
	}
	var b [9]byte
	rand.Read(b[:])
	sp.ID = base64.RawURLEncoding.EncodeToString(b[:])
	sp.Created = s.now().UTC()
	sp.From, sp.To = sp.From.UTC(), sp.To.UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sp) >= MaxSpans {
		return Span{}, fmt.Errorf("%w: already %d spans", ErrInvalid, MaxSpans)
	}
	s.sp = append(s.sp, sp)
	if err := s.save(); err != nil {
		s.sp = s.sp[:len(s.sp)-1]
		return Span{}, err
	}
	return sp, nil
}

// Delete removes a span.
func (s *Store) Delete(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, sp := range s.sp {
		if sp.ID == id {
			old := s.sp
			s.sp = append(append([]Span(nil), s.sp[:i]...), s.sp[i+1:]...)
			if err := s.save(); err != nil {
				s.sp = old
				return err
			}
			return nil
		}
	}
	return fmt.Errorf("labels: %q: %w", id, ErrNotFound)
}

// List returns the spans of device ("" for all), by start time.
func (s *Store) List(device string) []Span {
	s.mu.Lock()
	out := []Span{}
	for _, sp := range s.sp {
		if device == "" || sp.Device == device {
			out = append(out, sp)
		}
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].From.Before(out[j].From) })
	return out
}
