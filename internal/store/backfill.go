package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/prometheus/tsdb"
)

// BlockDuration is the time span of the blocks the store's head is cut
// into (Prometheus' minimum block duration), and of the blocks Backfill
// writes. Blocks are aligned to multiples of it since the Unix epoch.
const BlockDuration = 2 * time.Hour

// ErrOutsideWindow: a backfill generator appended a sample outside the
// block window it was asked for.
var ErrOutsideWindow = errors.New("store: sample outside the backfill window")

// BackfillFunc generates the samples of one block window [from, to):
// every sample it appends must have from <= T < to, and each series' samples
// must come in increasing time order. It is called once per window, windows
// in increasing time order, so a generator may keep state (ledgers, feature
// windows) from one window to the next. app may be called from several
// goroutines at once.
type BackfillFunc func(ctx context.Context, from, to time.Time, app Appender) error

// Appender takes batches of samples. *Store implements it, and so does what
// Backfill hands a BackfillFunc; ingest.Store is the same method.
type Appender interface {
	Append(ctx context.Context, batch []Sample) error
}

// BackfillOptions configures Backfill. Zero fields mean the documented
// defaults.
type BackfillOptions struct {
	// Logger receives the TSDB's logs. Default: discard.
	Logger *slog.Logger
	// Progress, when set, is called after each block window.
	Progress func(BackfillProgress)
}

// BackfillProgress is the state after one block window.
type BackfillProgress struct {
	WindowFrom, WindowTo time.Time
	Windows, Done        int    // windows in all and written so far
	Samples              uint64 // samples written so far
}

// BackfillStats tells what Backfill wrote.
type BackfillStats struct {
	Blocks  int    // 2 h blocks written (before any compaction)
	Samples uint64 // samples written
	// Series is the sum over the blocks of their series: a series present
	// in several blocks counts once per block.
	Series uint64
}

// Backfill writes samples straight into TSDB blocks in dir, the data
// directory of a Store (created if missing), without going through the
// head or the WAL: for every BlockDuration window of [from, to), aligned
// to multiples of BlockDuration since the epoch (the first and last are
// clipped to from and to), it calls gen and writes what gen appended as one
// block, as Prometheus' own backfilling (promtool tsdb create-blocks-from)
// does. Series and labels are built as Store.Append builds them, so a
// generator that appends what ingest appends gives the store a live server
// would have written. The store never merges blocks (its TSDB runs with
// Prometheus' library defaults, whose largest block is 2 h), so these are
// the blocks a server that ingested the same data live would hold.
//
// dir must not be open by a Store. Blocks overlapping existing ones are
// allowed by the TSDB and merged by queries and compaction; Backfill does
// not check.
func Backfill(ctx context.Context, dir string, from, to time.Time, gen BackfillFunc, o BackfillOptions) (BackfillStats, error) {
	var st BackfillStats
	if gen == nil {
		return st, errors.New("store: backfill: no generator")
	}
	if !from.Before(to) {
		return st, fmt.Errorf("store: backfill: empty time range %v .. %v", from, to)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return st, fmt.Errorf("store: backfill: %w", err)
	}
	windows := BlockWindows(from, to)
	for i, w := range windows {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		n, series, err := backfillWindow(ctx, dir, w[0], w[1], gen, o.Logger)
		if err != nil {
			return st, err
		}
		if n > 0 {
			st.Blocks++
			st.Samples += n
			st.Series += series
		}
		if o.Progress != nil {
			o.Progress(BackfillProgress{WindowFrom: w[0], WindowTo: w[1], Windows: len(windows), Done: i + 1, Samples: st.Samples})
		}
	}
	return st, nil
}

// BlockWindows splits [from, to) at the multiples of BlockDuration since
// the epoch (millisecond precision, as the store keeps time).
func BlockWindows(from, to time.Time) [][2]time.Time {
	width := BlockDuration.Milliseconds()
	f, t := Millis(from), Millis(to)
	var out [][2]time.Time
	for a := f; a < t; {
		b := (floorDiv(a, width) + 1) * width
		b = min(b, t)
		out = append(out, [2]time.Time{time.UnixMilli(a), time.UnixMilli(b)})
		a = b
	}
	return out
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// backfillWindow writes one block of [from, to) and returns its samples
// and series (0, 0 when gen appended nothing: no block is written).
func backfillWindow(ctx context.Context, dir string, from, to time.Time, gen BackfillFunc, log *slog.Logger) (uint64, uint64, error) {
	// The writer's head refuses samples more than half its chunk range
	// behind its newest one; a range of two blocks lets the generator
	// append device after device across the whole window (as promtool
	// does).
	bw, err := tsdb.NewBlockWriter(log, dir, 2*BlockDuration.Milliseconds())
	if err != nil {
		return 0, 0, fmt.Errorf("store: backfill: %w", err)
	}
	defer bw.Close()
	w := &windowAppender{bw: bw, from: Millis(from), to: Millis(to), cache: map[string]cached{}}
	if err := gen(ctx, from, to, w); err != nil {
		return 0, 0, fmt.Errorf("store: backfill %s .. %s: %w", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339), err)
	}
	if w.samples == 0 {
		return 0, 0, nil
	}
	id, err := bw.Flush(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("store: backfill: write block: %w", err)
	}
	b, err := readBlock(filepath.Join(dir, id.String()))
	if err != nil {
		return 0, 0, fmt.Errorf("store: backfill: %w", err)
	}
	return b.Samples, b.Series, nil
}

// BlockInfo describes one block on disk (from its meta.json).
type BlockInfo struct {
	ID                      string
	MinTime, MaxTime        time.Time // [MinTime, MaxTime)
	Samples, Series, Chunks uint64
	Level                   int   // compaction level: 1 for a block cut from the head or backfilled
	Bytes                   int64 // files of the block (index, chunks, meta, tombstones)
	IndexBytes              int64 // its index file (labels, postings, chunk references)
}

// Blocks lists the blocks in a store directory, oldest first. Directories
// without a meta.json (a WAL, a block being written) are skipped.
func Blocks(dir string) ([]BlockInfo, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	var out []BlockInfo
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if _, err := os.Stat(filepath.Join(p, "meta.json")); err != nil {
			continue
		}
		b, err := readBlock(p)
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b BlockInfo) int { return a.MinTime.Compare(b.MinTime) })
	return out, nil
}

func readBlock(dir string) (BlockInfo, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return BlockInfo{}, err
	}
	var m tsdb.BlockMeta
	if err := json.Unmarshal(raw, &m); err != nil {
		return BlockInfo{}, fmt.Errorf("block %s: meta.json: %w", dir, err)
	}
	b := BlockInfo{ID: m.ULID.String(), MinTime: time.UnixMilli(m.MinTime), MaxTime: time.UnixMilli(m.MaxTime),
		Samples: m.Stats.NumSamples, Series: m.Stats.NumSeries, Chunks: m.Stats.NumChunks, Level: m.Compaction.Level}
	if fi, err := os.Stat(filepath.Join(dir, "index")); err == nil {
		b.IndexBytes = fi.Size()
	}
	b.Bytes, err = DirBytes(dir)
	return b, err
}

// DirBytes is the size of the regular files under dir.
func DirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	return n, err
}

// windowAppender is the Appender a BackfillFunc gets: Store.Append's
// series building over a BlockWriter's head. Appends are serialised.
type windowAppender struct {
	bw       *tsdb.BlockWriter
	from, to int64

	mu      sync.Mutex
	cache   map[string]cached
	key     []byte
	samples uint64
}

// Append stores batch in the block being written. Refusals are reported
// as by Store.Append (*AppendError; ErrOutsideWindow for a sample outside
// the window); the other samples are kept.
func (w *windowAppender) Append(ctx context.Context, batch []Sample) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	app := w.bw.Appender(ctx)
	var aerr *AppendError
	var n uint64
	for i := range batch {
		smp := &batch[i]
		if smp.T < w.from || smp.T >= w.to {
			aerr = aerr.add(i, fmt.Errorf("%w: %s at %d not in [%d, %d)", ErrOutsideWindow, smp.Metric, smp.T, w.from, w.to))
			continue
		}
		w.key = seriesKey(w.key[:0], smp)
		c, ok := w.cache[string(w.key)]
		nc, err := appendSample(app, smp, c, ok)
		if err != nil {
			aerr = aerr.add(i, err)
			continue
		}
		n++
		if nc.ref != c.ref {
			w.cache[string(w.key)] = nc
		}
	}
	if err := app.Commit(); err != nil {
		return fmt.Errorf("store: backfill commit: %w", err)
	}
	w.samples += n
	if aerr != nil {
		return aerr
	}
	return nil
}

var _ Appender = (*Store)(nil)
