package classify

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"loadwatch/internal/forest"
)

// ErrNoModel is returned when no model is loaded (or none to roll back to).
var ErrNoModel = errors.New("no model loaded")

// Loaded is a model in use and where it came from. It is never modified
// after it is published, so readers may keep it as long as they like.
type Loaded struct {
	Model    *forest.Model
	Source   string    // file path, or a caller's name for Set
	SHA256   string    // hex digest of the file, "" for Set
	LoadedAt time.Time // when it was loaded
}

// Holder holds the model in use. Current is one atomic load, so requests
// never wait on a reload; a reload checks the new model fully before it
// swaps it in, and keeps the old one for Rollback.
type Holder struct {
	cur  atomic.Pointer[Loaded]
	mu   sync.Mutex // serialises Load, Set and Rollback
	prev *Loaded
	now  func() time.Time
}

// NewHolder returns an empty Holder. now is the clock (nil = time.Now).
func NewHolder(now func() time.Time) *Holder {
	if now == nil {
		now = time.Now
	}
	return &Holder{now: now}
}

// Current returns the model in use, or nil.
func (h *Holder) Current() *Loaded { return h.cur.Load() }

// Previous returns the model Rollback would restore, or nil.
func (h *Holder) Previous() *Loaded {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.prev
}

// LoadFile reads, checks and swaps in the model at path. On any error the
// model in use stays.
func (h *Holder) LoadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load model: %w", err)
	}
	defer f.Close()
	sum := sha256.New()
	m, err := forest.Load(bufio.NewReader(io.TeeReader(f, sum)))
	if err != nil {
		return fmt.Errorf("load model %s: %w", path, err)
	}
	// Load may stop before the end of the file; hash all of it.
	if _, err := io.Copy(sum, f); err != nil {
		return fmt.Errorf("load model %s: %w", path, err)
	}
	return h.swap(&Loaded{Model: m, Source: path, SHA256: hex.EncodeToString(sum.Sum(nil))})
}

// Set checks and swaps in m, naming it source.
func (h *Holder) Set(m *forest.Model, source string) error {
	return h.swap(&Loaded{Model: m, Source: source})
}

func (h *Holder) swap(l *Loaded) error {
	if err := CheckModel(l.Model); err != nil {
		return fmt.Errorf("load model %s: %w", l.Source, err)
	}
	l.LoadedAt = h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if old := h.cur.Swap(l); old != nil {
		h.prev = old
	}
	return nil
}

// Rollback puts the previous model back; the current one becomes the
// previous, so a second Rollback undoes the first.
func (h *Holder) Rollback() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.prev == nil {
		return fmt.Errorf("rollback: %w", ErrNoModel)
	}
	h.prev = h.cur.Swap(h.prev)
	return nil
}

// Watch polls path every interval and loads it again when its size or
// modification time changes. A file that fails to load is reported to
// onError (when set) and the model in use stays; Watch tries again on the
// next change. It returns when ctx ends.
func (h *Holder) Watch(ctx context.Context, path string, interval time.Duration, onError func(error)) error {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	var lastSize int64 = -1
	var lastMod time.Time
	if fi, err := os.Stat(path); err == nil {
		lastSize, lastMod = fi.Size(), fi.ModTime()
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		fi, err := os.Stat(path)
		if err != nil {
			continue // being replaced, or gone: keep the model in use
		}
		if fi.Size() == lastSize && fi.ModTime().Equal(lastMod) {
			continue
		}
		lastSize, lastMod = fi.Size(), fi.ModTime()
		if err := h.LoadFile(path); err != nil && onError != nil {
			onError(err)
		}
	}
}
