// Package outbox is the agent's durable store-and-forward queue: readings
// are appended to segment files on disk before they are published, replayed
// in order after a broker outage or an agent restart, and deleted only when
// acknowledged (the MQTT PUBACK).
//
// Each record is framed with its length and a CRC-32C; a torn record at the
// end of a segment (a crash mid-write, a power cut) is detected and dropped
// when the outbox is opened, never a panic. The outbox assigns each record
// its sequence number and carries the epoch (a random boot id): (epoch, seq)
// identify a reading for the server's dedupe. Both survive restarts in a
// small state file written atomically (write, fsync, rename, fsync dir);
// a lost state file starts a new epoch, as does an unclean shutdown when
// appends are not fsynced (a record that was published may then have been
// lost and its seq must not be reused within the epoch).
//
// The queue is bounded (Options.MaxBytes): when full, the oldest segment is
// dropped whole and its unacknowledged records are counted in
// Stats.Dropped. Readings the server refuses for good go to a dead-letter
// file (DeadLetter). See docs/AGENT.md.
//
// An Outbox is safe for concurrent use (the sampling loop appends, the
// network side reads and acknowledges). It imports only the standard library.
package outbox

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// SyncPolicy says when appended records are fsynced.
type SyncPolicy int

// The sync policies.
const (
	// SyncAlways fsyncs every Append before it returns: a record that
	// Append returned for survives a power cut. The default.
	SyncAlways SyncPolicy = iota
	// SyncManual leaves fsync to the caller (Sync); a crash may lose the
	// records appended since, and the next Open then starts a new epoch.
	SyncManual
)

// Options configure an Outbox. Zero fields mean the documented defaults.
type Options struct {
	SegmentSize   int64            // roll to a new segment beyond this (default 4 MiB; at most MaxBytes/4)
	MaxBytes      int64            // bound on all segments (default 64 MiB)
	Sync          SyncPolicy       // default SyncAlways
	DeadLetterMax int64            // dead-letter file size before it rotates to .1 (default 16 MiB)
	Now           func() time.Time // clock for dead-letter stamps (default time.Now)
}

// Record is one queued message.
type Record struct {
	Seq     uint64
	Epoch   string // the epoch the record was appended in
	Payload []byte
}

// Stats describe the queue.
type Stats struct {
	Epoch        string
	NextSeq      uint64 // seq the next Append gets
	Acked        uint64 // highest acknowledged (or dropped) seq
	Pending      uint64 // records not yet acknowledged
	Bytes        int64  // bytes in segment files
	Segments     int
	Dropped      uint64 // records dropped unacknowledged because the queue was full
	DeadLettered uint64 // records moved to the dead-letter file
	Torn         uint64 // torn or corrupt records dropped when opening (this process)
	NewEpoch     bool   // Open started a new epoch (fresh, lost state or unclean shutdown)
}

// Errors.
var (
	ErrClosed     = errors.New("outbox: closed")
	ErrTooLarge   = errors.New("outbox: record too large")
	ErrAckBeyond  = errors.New("outbox: ack beyond the last appended record")
	ErrEpochLimit = errors.New("outbox: epoch longer than 255 bytes")
)

type segment struct {
	first uint64 // seq in the file name: the first record's seq (or the next seq when empty)
	last  uint64 // last record's seq; valid when count > 0
	count int
	size  int64
	path  string
}

type state struct {
	Epoch        string          `json:"epoch"`
	NextSeq      uint64          `json:"next_seq"`
	Acked        uint64          `json:"acked"`
	Dropped      uint64          `json:"dropped"`
	DeadLettered uint64          `json:"dead_lettered"`
	Clean        bool            `json:"clean"`
	User         json.RawMessage `json:"user,omitempty"`
}

// Outbox is a durable queue in one directory.
type Outbox struct {
	mu       sync.Mutex
	dir      string
	opts     Options
	st       state
	segs     []segment
	active   *os.File
	bytes    int64
	torn     uint64
	newEpoch bool
	curSeg   int   // cursor: segment index of the first unacknowledged record
	curOff   int64 // and its offset
	buf      []byte
	closed   bool
}

const (
	stateFile      = "state.json"
	deadLetterFile = "deadletter.jsonl"
	segSuffix      = ".seg"
)

func segName(first uint64) string { return fmt.Sprintf("%020d%s", first, segSuffix) }

func newEpochID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b[:])
}

// Open opens (or creates) the outbox in dir, recovering from a crash: torn
// records are truncated away, segments already acknowledged are removed.
func Open(dir string, opts Options) (*Outbox, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 64 << 20
	}
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = 4 << 20
	}
	if opts.SegmentSize > opts.MaxBytes/4 {
		opts.SegmentSize = max(opts.MaxBytes/4, 1)
	}
	if opts.DeadLetterMax <= 0 {
		opts.DeadLetterMax = 16 << 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	o := &Outbox{dir: dir, opts: opts}
	lost := false
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		lost = true
	case err != nil:
		return nil, fmt.Errorf("outbox: %w", err)
	default:
		if json.Unmarshal(b, &o.st) != nil || o.st.Epoch == "" || len(o.st.Epoch) > 255 {
			lost = true
			o.st = state{}
		}
	}
	if lost || (!o.st.Clean && opts.Sync != SyncAlways) {
		o.st.Epoch = newEpochID()
		o.newEpoch = true
	}
	if err := o.loadSegments(); err != nil {
		return nil, err
	}
	if o.st.NextSeq == 0 {
		o.st.NextSeq = 1
	}
	if n := len(o.segs); n > 0 && o.segs[n-1].count > 0 && o.segs[n-1].last >= o.st.NextSeq {
		o.st.NextSeq = o.segs[n-1].last + 1
	}
	if o.st.Acked >= o.st.NextSeq {
		o.st.Acked = o.st.NextSeq - 1
	}
	if err := o.removeAcked(); err != nil {
		return nil, err
	}
	if err := o.openActive(); err != nil {
		return nil, err
	}
	// Seqs inside a segment are contiguous; after a gap (records lost in a
	// crash, or a state that had moved on) start a new segment.
	if act := o.segs[len(o.segs)-1]; act.count > 0 && act.last+1 != o.st.NextSeq {
		if err := o.roll(); err != nil {
			return nil, err
		}
	}
	if err := o.seekCursor(); err != nil {
		o.active.Close()
		return nil, err
	}
	o.st.Clean = false
	if err := o.saveState(); err != nil {
		o.active.Close()
		return nil, err
	}
	return o, nil
}

// loadSegments lists and scans the segment files, truncating torn tails.
func (o *Outbox) loadSegments() error {
	names, err := filepath.Glob(filepath.Join(o.dir, "*"+segSuffix))
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	sort.Strings(names)
	var prev uint64
	for _, p := range names {
		first, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(p), segSuffix), 10, 64)
		if err != nil {
			continue // not ours
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
		s := segment{first: first, path: p}
		off := 0
		for off < len(data) {
			seq, _, _, n, err := decodeRecord(data[off:])
			if err != nil || seq <= prev || (s.count == 0 && seq < first) {
				break
			}
			if s.count == 0 {
				s.first = seq
			}
			s.last, prev = seq, seq
			s.count++
			off += n
		}
		if off < len(data) {
			o.torn += countTorn(data[off:])
			if err := truncateSync(p, int64(off)); err != nil {
				return err
			}
		}
		s.size = int64(off)
		if s.count == 0 {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("outbox: %w", err)
			}
			continue
		}
		o.segs = append(o.segs, s)
		o.bytes += s.size
	}
	return nil
}

// countTorn estimates how many records a damaged tail held (at least one).
func countTorn(tail []byte) uint64 {
	var n uint64 = 1
	for off := 1; off+headerLen <= len(tail); off++ {
		if _, _, _, k, err := decodeRecord(tail[off:]); err == nil {
			n++
			off += k - 1
		}
	}
	return n
}

func truncateSync(p string, size int64) error {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}

func (o *Outbox) syncDir() error {
	d, err := os.Open(o.dir)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}

// removeAcked deletes segments whose records are all acknowledged, except
// the last one (the active segment).
func (o *Outbox) removeAcked() error {
	removed := false
	for len(o.segs) > 1 && o.segs[0].last <= o.st.Acked {
		if err := os.Remove(o.segs[0].path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("outbox: %w", err)
		}
		o.bytes -= o.segs[0].size
		o.segs = o.segs[1:]
		o.curSeg--
		removed = true
	}
	if o.curSeg < 0 {
		o.curSeg, o.curOff = 0, 0
	}
	if removed {
		return o.syncDir()
	}
	return nil
}

func (o *Outbox) openActive() error {
	if len(o.segs) == 0 {
		return o.newSegment()
	}
	s := &o.segs[len(o.segs)-1]
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	o.active = f
	return nil
}

func (o *Outbox) newSegment() error {
	p := filepath.Join(o.dir, segName(o.st.NextSeq))
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	if err := o.syncDir(); err != nil {
		f.Close()
		return err
	}
	o.segs = append(o.segs, segment{first: o.st.NextSeq, path: p})
	o.active = f
	return nil
}

// readHeader reads the length and seq of the record at off in seg.
func readHeader(f *os.File, off int64) (size uint32, seq uint64, err error) {
	var h [headerLen + 8]byte
	if _, err := f.ReadAt(h[:], off); err != nil {
		return 0, 0, err
	}
	return binary.LittleEndian.Uint32(h[:]), binary.LittleEndian.Uint64(h[headerLen:]), nil
}

// seekCursor moves the cursor to the first record with seq > Acked,
// starting from the current cursor.
func (o *Outbox) seekCursor() error {
	for o.curSeg < len(o.segs) {
		s := &o.segs[o.curSeg]
		if s.count == 0 || s.last <= o.st.Acked {
			if o.curSeg == len(o.segs)-1 {
				o.curOff = s.size
				return nil
			}
			o.curSeg++
			o.curOff = 0
			continue
		}
		f, err := os.Open(s.path)
		if err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
		for o.curOff < s.size {
			size, seq, err := readHeader(f, o.curOff)
			if err != nil {
				f.Close()
				return fmt.Errorf("outbox: %w", err)
			}
			if seq > o.st.Acked {
				f.Close()
				return nil
			}
			o.curOff += headerLen + int64(size)
		}
		f.Close()
	}
	return nil
}

func (o *Outbox) saveState() error {
	b, err := json.Marshal(&o.st)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	tmp := filepath.Join(o.dir, stateFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("outbox: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("outbox: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(o.dir, stateFile)); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return o.syncDir()
}

// Epoch returns the current epoch (records appended now carry it).
func (o *Outbox) Epoch() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.st.Epoch
}

// NextSeq returns the seq the next Append will assign.
func (o *Outbox) NextSeq() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.st.NextSeq
}

// Append queues payload under the next seq and returns that seq. With
// SyncAlways the record is on stable storage when Append returns.
func (o *Outbox) Append(payload []byte) (uint64, error) {
	return o.AppendFunc(func(uint64, string) []byte { return payload })
}

// AppendFunc is Append for payloads that embed their own seq and epoch:
// build is called, under the outbox's lock, with the seq and epoch the
// record will have.
func (o *Outbox) AppendFunc(build func(seq uint64, epoch string) []byte) (uint64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return 0, ErrClosed
	}
	seq := o.st.NextSeq
	payload := build(seq, o.st.Epoch)
	if 9+len(o.st.Epoch)+len(payload) > MaxRecord {
		return 0, ErrTooLarge
	}
	o.buf = appendRecord(o.buf[:0], seq, o.st.Epoch, payload)
	n := int64(len(o.buf))
	act := &o.segs[len(o.segs)-1]
	if act.count > 0 && act.size+n > o.opts.SegmentSize {
		if err := o.roll(); err != nil {
			return 0, err
		}
	}
	if err := o.makeRoom(n); err != nil {
		return 0, err
	}
	act = &o.segs[len(o.segs)-1]
	if _, err := o.active.Write(o.buf); err != nil {
		_ = o.active.Truncate(act.size) // best effort: never leave half a record behind
		return 0, fmt.Errorf("outbox: append: %w", err)
	}
	if o.opts.Sync == SyncAlways {
		if err := o.active.Sync(); err != nil {
			return 0, fmt.Errorf("outbox: fsync: %w", err)
		}
	}
	if act.count == 0 {
		act.first = seq
	}
	act.last = seq
	act.count++
	act.size += n
	o.bytes += n
	o.st.NextSeq++
	return seq, nil
}

func (o *Outbox) roll() error {
	if err := o.active.Sync(); err != nil {
		return fmt.Errorf("outbox: fsync: %w", err)
	}
	if err := o.active.Close(); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return o.newSegment()
}

// makeRoom drops the oldest segments until n more bytes fit.
func (o *Outbox) makeRoom(n int64) error {
	dropped := false
	for o.bytes+n > o.opts.MaxBytes && len(o.segs) > 1 {
		s := o.segs[0]
		if s.last > o.st.Acked {
			from := max(s.first, o.st.Acked+1)
			o.st.Dropped += s.last - from + 1
			o.st.Acked = s.last
		}
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("outbox: %w", err)
		}
		o.bytes -= s.size
		o.segs = o.segs[1:]
		if o.curSeg == 0 {
			o.curOff = 0
		} else {
			o.curSeg--
		}
		dropped = true
	}
	if dropped {
		return o.saveState()
	}
	return nil
}

// Sync fsyncs the active segment (for SyncManual).
func (o *Outbox) Sync() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return ErrClosed
	}
	return o.active.Sync()
}

// Pending returns up to max unacknowledged records, oldest first, without
// removing them. Records own their memory.
func (o *Outbox) Pending(max int) ([]Record, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil, ErrClosed
	}
	var out []Record
	seg, off := o.curSeg, o.curOff
	for seg < len(o.segs) && len(out) < max {
		s := o.segs[seg]
		if off >= s.size {
			seg, off = seg+1, 0
			continue
		}
		f, err := os.Open(s.path)
		if err != nil {
			return out, fmt.Errorf("outbox: %w", err)
		}
		r := bufio.NewReaderSize(io.NewSectionReader(f, off, s.size-off), 64<<10)
		for off < s.size && len(out) < max {
			var h [headerLen]byte
			if _, err := io.ReadFull(r, h[:]); err != nil {
				f.Close()
				return out, fmt.Errorf("outbox: read: %w", err)
			}
			size := binary.LittleEndian.Uint32(h[:])
			if size > MaxRecord {
				f.Close()
				return out, fmt.Errorf("outbox: read %s at %d: %w", s.path, off, errCorrupt)
			}
			rec := make([]byte, headerLen+int(size))
			copy(rec, h[:])
			if _, err := io.ReadFull(r, rec[headerLen:]); err != nil {
				f.Close()
				return out, fmt.Errorf("outbox: read: %w", err)
			}
			seq, epoch, payload, _, err := decodeRecord(rec)
			if err != nil {
				f.Close()
				return out, fmt.Errorf("outbox: read %s at %d: %w", s.path, off, err)
			}
			off += int64(len(rec))
			if seq <= o.st.Acked {
				continue
			}
			out = append(out, Record{Seq: seq, Epoch: string(epoch), Payload: payload})
		}
		f.Close()
	}
	return out, nil
}

// Ack acknowledges every record with seq <= upTo: they will not be
// returned again and their segments are deleted once fully acknowledged.
// The acknowledgement is persisted before Ack returns.
func (o *Outbox) Ack(upTo uint64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return ErrClosed
	}
	if upTo >= o.st.NextSeq {
		return fmt.Errorf("%w: %d >= %d", ErrAckBeyond, upTo, o.st.NextSeq)
	}
	if upTo <= o.st.Acked {
		return nil
	}
	o.st.Acked = upTo
	if err := o.seekCursor(); err != nil {
		return err
	}
	if err := o.removeAcked(); err != nil {
		return err
	}
	return o.saveState()
}

// DeadLetter appends rec to the dead-letter file (one JSON object per
// line: ts, epoch, seq, reason, and payload as a string when it is UTF-8,
// else payload_b64) and counts it. It does not acknowledge rec: call Ack
// after it. The file rotates to deadletter.jsonl.1 beyond DeadLetterMax.
func (o *Outbox) DeadLetter(rec Record, reason string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return ErrClosed
	}
	line := struct {
		TS         string `json:"ts"`
		Epoch      string `json:"epoch"`
		Seq        uint64 `json:"seq"`
		Reason     string `json:"reason"`
		Payload    string `json:"payload,omitempty"`
		PayloadB64 string `json:"payload_b64,omitempty"`
	}{TS: o.opts.Now().UTC().Format(time.RFC3339Nano), Epoch: rec.Epoch, Seq: rec.Seq, Reason: reason}
	if utf8.Valid(rec.Payload) {
		line.Payload = string(rec.Payload)
	} else {
		line.PayloadB64 = base64.StdEncoding.EncodeToString(rec.Payload)
	}
	b, err := json.Marshal(line)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	p := filepath.Join(o.dir, deadLetterFile)
	if fi, err := os.Stat(p); err == nil && fi.Size()+int64(len(b)) > o.opts.DeadLetterMax {
		if err := os.Rename(p, p+".1"); err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	o.st.DeadLettered++
	return nil
}

// UserState returns the caller's opaque state (the agent keeps its energy
// ledgers there) as last saved, or nil.
func (o *Outbox) UserState() []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]byte(nil), o.st.User...)
}

// SaveUserState persists the caller's state, which must be valid JSON (or
// empty), atomically with the outbox's own state.
func (o *Outbox) SaveUserState(b []byte) error {
	if len(b) > 0 && !json.Valid(b) {
		return errors.New("outbox: user state is not valid JSON")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return ErrClosed
	}
	o.st.User = append(json.RawMessage(nil), b...)
	return o.saveState()
}

// Stats returns the queue's counters.
func (o *Outbox) Stats() Stats {
	o.mu.Lock()
	defer o.mu.Unlock()
	return Stats{
		Epoch: o.st.Epoch, NextSeq: o.st.NextSeq, Acked: o.st.Acked,
		Pending: o.pending(), Bytes: o.bytes, Segments: len(o.segs),
		Dropped: o.st.Dropped, DeadLettered: o.st.DeadLettered, Torn: o.torn, NewEpoch: o.newEpoch,
	}
}

// pending counts the records with seq > Acked (seqs are contiguous
// within a segment).
func (o *Outbox) pending() uint64 {
	var n uint64
	for _, s := range o.segs {
		if s.count > 0 && s.last > o.st.Acked {
			n += s.last - max(s.first, o.st.Acked+1) + 1
		}
	}
	return n
}

// Close fsyncs, marks the shutdown clean and closes the files.
func (o *Outbox) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	o.closed = true
	err := o.active.Sync()
	if cerr := o.active.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	o.st.Clean = true
	return o.saveState()
}
