// Package registry keeps loadwatch's identities: devices with their
// credentials, meter addresses, firmware version and last-seen time, the
// admin/ingest identity of the broker, dashboard users and API tokens.
//
// It is a SQLite database (modernc.org/sqlite, pure Go) in WAL mode with a
// busy timeout, so the `loadwatch device` CLI can change it while `loadwatch
// serve` has it open. Secrets are random 256-bit tokens stored only as
// SHA-256 digests: checking one costs a hash and an indexed lookup
// (microseconds), not a bcrypt round, which matters for duty-cycled devices
// that reconnect every few minutes. Dashboard passwords, which people
// choose, are stored with PBKDF2-HMAC-SHA256.
package registry

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // time zones of Tasmota devices must resolve on any host

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// Errors callers check with errors.Is.
var (
	ErrNotFound       = errors.New("not found")
	ErrExists         = errors.New("already exists")
	ErrInvalid        = errors.New("invalid")
	ErrBadCredentials = errors.New("bad credentials")
	ErrRevoked        = errors.New("revoked")
	ErrForbidden      = errors.New("missing scope")
)

// FileName is the registry's file inside a data directory.
const FileName = "registry.db"

// AdminName is the username of the broker's admin/ingest identity. It is
// reserved: no device may use it.
const AdminName = "admin"

// Path returns the registry file of a data directory.
func Path(dataDir string) string { return filepath.Join(dataDir, FileName) }

// Purger deletes the stored series of a deleted device (implemented by the
// store). It must delete the series of the device and of its sub-devices
// (`<id>.<addr>`) with samples up to and including before, so a device
// re-added under the same id after the purge was requested keeps its new data.
type Purger interface {
	PurgeDevice(ctx context.Context, id string, before time.Time) error
}

// Options tunes a Registry; zero fields mean the documented defaults.
type Options struct {
	// FlushInterval is how often Run writes batched last-seen times and
	// drains pending purges. Default 5 s.
	FlushInterval time.Duration
	// Purger, if set, is called by Run for each pending purge.
	Purger Purger
	// PasswordIterations is the PBKDF2 iteration count for new dashboard
	// passwords. Default 600,000 (OWASP 2023 for PBKDF2-HMAC-SHA256).
	PasswordIterations int
	// BusyTimeout is how long a write waits for another process's write
	// transaction. Default 5 s.
	BusyTimeout time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Registry is safe for concurrent use, also from several processes.
type Registry struct {
	db   *sql.DB
	opts Options

	seenMu sync.Mutex
	seen   map[string]time.Time // batched last-seen times not yet written
}

// Open opens (creating if needed) the registry at path.
func Open(ctx context.Context, path string, opts *Options) (*Registry, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = 5 * time.Second
	}
	if o.PasswordIterations <= 0 {
		o.PasswordIterations = 600_000
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("registry: %w", err)
		}
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", o.BusyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("registry: open %s: %w", path, err)
	}
	// Every connection runs the pragmas above when it opens; keep a pool
	// instead of database/sql's default of two idle connections, so a burst
	// of device connects (Authenticate) reuses connections rather than
	// opening one per call, and bound it so the burst queues in the pool.
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	r := &Registry{db: db, opts: o, seen: map[string]time.Time{}}
	if err := r.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("registry: open %s: %w", path, err)
	}
	return r, nil
}

// maxConns bounds the registry's SQLite connections (WAL: readers run
// concurrently, writers take turns under busy_timeout).
const maxConns = 8

const schema = `
CREATE TABLE IF NOT EXISTS devices (
	id            TEXT PRIMARY KEY,
	created       INTEGER NOT NULL,
	revoked       INTEGER,
	addrs         TEXT NOT NULL DEFAULT '',
	firmware      TEXT NOT NULL DEFAULT '',
	last_seen     INTEGER,
	tasmota_topic TEXT UNIQUE,
	tz            TEXT NOT NULL DEFAULT '',
	token_hash    BLOB NOT NULL UNIQUE,
	token_created INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS admins (
	name       TEXT PRIMARY KEY,
	token_hash BLOB NOT NULL UNIQUE,
	created    INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS users (
	name          TEXT PRIMARY KEY,
	password_hash TEXT NOT NULL,
	created       INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS api_tokens (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL,
	token_hash BLOB NOT NULL UNIQUE,
	scopes     TEXT NOT NULL,
	created    INTEGER NOT NULL,
	revoked    INTEGER
) STRICT;
CREATE TABLE IF NOT EXISTS purges (
	device    TEXT NOT NULL,
	requested INTEGER NOT NULL,
	PRIMARY KEY (device, requested)
) STRICT;
PRAGMA user_version = 1;
`

func (r *Registry) migrate(ctx context.Context) error {
	var v int
	if err := r.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return err
	}
	switch {
	case v == 1:
		return nil
	case v > 1:
		return fmt.Errorf("schema version %d is newer than this binary (1)", v)
	}
	_, err := r.db.ExecContext(ctx, schema)
	return err
}

// Close writes pending last-seen times and closes the database.
func (r *Registry) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.BusyTimeout)
	defer cancel()
	ferr := r.FlushLastSeen(ctx)
	return errors.Join(ferr, r.db.Close())
}

// Run flushes batched last-seen times and drains pending purges every
// FlushInterval until ctx ends, then flushes once more.
func (r *Registry) Run(ctx context.Context) error {
	t := time.NewTicker(r.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.BusyTimeout)
			err := r.FlushLastSeen(fctx)
			cancel()
			return err
		case <-t.C:
			if err := r.FlushLastSeen(ctx); err != nil && ctx.Err() == nil {
				return err
			}
			if r.opts.Purger != nil {
				if _, err := r.DrainPurges(ctx, r.opts.Purger); err != nil && ctx.Err() == nil {
					return err
				}
			}
		}
	}
}

// Device is one registered device.
type Device struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	// Revoked is zero while the device may connect.
	Revoked time.Time `json:"revoked,omitzero"`
	// Addrs are the Modbus addresses of its meters (1..247); it may report
	// meter N as the derived device `<id>.<N>`.
	Addrs    []int     `json:"addrs,omitempty"`
	Firmware string    `json:"firmware,omitempty"`
	LastSeen time.Time `json:"last_seen,omitzero"`
	// TasmotaTopic, if set, maps Tasmota's `tele/<topic>/SENSOR` to this
	// device; TimeZone is the zone of Tasmota's zone-less `Time`.
	TasmotaTopic string    `json:"tasmota_topic,omitempty"`
	TimeZone     string    `json:"time_zone,omitempty"`
	TokenCreated time.Time `json:"token_created"`
}

// NewDevice describes a device to add.
type NewDevice struct {
	ID           string
	Addrs        []int
	TasmotaTopic string
	TimeZone     string
}

// Principal is who an MQTT connection authenticated as.
type Principal struct {
	ID           string // device id or admin name
	Admin        bool   // the admin/ingest identity: every topic allowed
	Addrs        []int  // meter addresses (devices only)
	TasmotaTopic string // optional (devices only)
}

// ValidateID checks a device id: 1 to 64 characters from A-Z a-z 0-9 _ -.
// That excludes MQTT's `/`, `+`, `#` and `$`, and `.`, which separates a
// meter address in the derived sub-device ids `<id>.<addr>`.
func ValidateID(id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("%w device id %q: want 1 to 64 characters", ErrInvalid, id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("%w device id %q: character %q not allowed (use A-Z a-z 0-9 _ -; `<id>.<addr>` sub-devices are derived, not registered)", ErrInvalid, id, c)
		}
	}
	if id == AdminName {
		return fmt.Errorf("%w device id %q: reserved for the admin identity", ErrInvalid, id)
	}
	return nil
}

// SplitSubDevice splits a reporting id `<id>.<addr>` into the device id and
// the meter address; a plain id returns addr 0. ok is false when the form is
// wrong (bad id, address not in 1..247).
func SplitSubDevice(s string) (id string, addr int, ok bool) {
	id, a, has := strings.Cut(s, ".")
	if ValidateID(id) != nil {
		return "", 0, false
	}
	if !has {
		return id, 0, true
	}
	n, err := strconv.Atoi(a)
	if err != nil || n < 1 || n > 247 || strconv.Itoa(n) != a {
		return "", 0, false
	}
	return id, n, true
}

func validateTasmotaTopic(t string) error {
	if t == "" {
		return nil
	}
	if len(t) > 64 {
		return fmt.Errorf("%w tasmota topic %q: longer than 64 characters", ErrInvalid, t)
	}
	for _, c := range t {
		if c <= ' ' || c > '~' || c == '/' || c == '+' || c == '#' {
			return fmt.Errorf("%w tasmota topic %q: character %q not allowed", ErrInvalid, t, c)
		}
	}
	return nil
}

func validateAddrs(addrs []int) ([]int, error) {
	out := append([]int(nil), addrs...)
	sort.Ints(out)
	for i, a := range out {
		if a < 1 || a > 247 {
			return nil, fmt.Errorf("%w meter address %d: want 1..247", ErrInvalid, a)
		}
		if i > 0 && out[i-1] == a {
			return nil, fmt.Errorf("%w meter address %d: listed twice", ErrInvalid, a)
		}
	}
	return out, nil
}

func formatAddrs(a []int) string {
	s := make([]string, len(a))
	for i, v := range a {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func parseAddrs(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	out := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("stored addresses %q: %w", s, err)
		}
		out[i] = n
	}
	return out, nil
}

// newToken returns a fresh secret with a short kind prefix (which lets
// secret scanners recognise it) and its SHA-256 digest.
func newToken(prefix string) (string, []byte) {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand documents it)
	tok := prefix + base64.RawURLEncoding.EncodeToString(b[:])
	return tok, digest(tok)
}

func digest(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}

func isUnique(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// Add registers a device and returns it with its token, which is shown
// only here: the registry keeps its SHA-256 digest.
func (r *Registry) Add(ctx context.Context, nd NewDevice) (Device, string, error) {
	if err := ValidateID(nd.ID); err != nil {
		return Device{}, "", err
	}
	addrs, err := validateAddrs(nd.Addrs)
	if err != nil {
		return Device{}, "", err
	}
	if err := validateTasmotaTopic(nd.TasmotaTopic); err != nil {
		return Device{}, "", err
	}
	if nd.TimeZone != "" {
		if nd.TasmotaTopic == "" {
			return Device{}, "", fmt.Errorf("%w: a time zone is only used with a Tasmota topic", ErrInvalid)
		}
		if _, err := time.LoadLocation(nd.TimeZone); err != nil {
			return Device{}, "", fmt.Errorf("%w time zone %q: %v", ErrInvalid, nd.TimeZone, err)
		}
	}
	now := r.opts.Now().UTC().Truncate(time.Millisecond)
	tok, h := newToken("lwd_")
	var topic any
	if nd.TasmotaTopic != "" {
		topic = nd.TasmotaTopic
	}
	_, err = r.db.ExecContext(ctx, `INSERT INTO devices (id, created, addrs, tasmota_topic, tz, token_hash, token_created)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, nd.ID, ms(now), formatAddrs(addrs), topic, nd.TimeZone, h, ms(now))
	if isUnique(err) {
		if strings.Contains(err.Error(), "tasmota_topic") {
			return Device{}, "", fmt.Errorf("registry: tasmota topic %q: %w (used by another device)", nd.TasmotaTopic, ErrExists)
		}
		return Device{}, "", fmt.Errorf("registry: device %q: %w", nd.ID, ErrExists)
	}
	if err != nil {
		return Device{}, "", fmt.Errorf("registry: add %q: %w", nd.ID, err)
	}
	return Device{ID: nd.ID, Created: now, Addrs: addrs, TasmotaTopic: nd.TasmotaTopic, TimeZone: nd.TimeZone, TokenCreated: now}, tok, nil
}

const deviceCols = `id, created, revoked, addrs, firmware, last_seen, tasmota_topic, tz, token_created`

type scanner interface{ Scan(...any) error }

func scanDevice(s scanner) (Device, error) {
	var d Device
	var created, tokCreated int64
	var revoked, seen sql.NullInt64
	var addrs string
	var topic sql.NullString
	if err := s.Scan(&d.ID, &created, &revoked, &addrs, &d.Firmware, &seen, &topic, &d.TimeZone, &tokCreated); err != nil {
		return Device{}, err
	}
	d.Created = time.UnixMilli(created).UTC()
	d.TokenCreated = time.UnixMilli(tokCreated).UTC()
	d.Revoked = fromMS(revoked)
	d.LastSeen = fromMS(seen)
	d.TasmotaTopic = topic.String
	var err error
	d.Addrs, err = parseAddrs(addrs)
	return d, err
}

func (r *Registry) overlaySeen(d *Device) {
	r.seenMu.Lock()
	t, ok := r.seen[d.ID]
	r.seenMu.Unlock()
	if ok && t.After(d.LastSeen) {
		d.LastSeen = t.UTC()
	}
}

// Get returns one device.
func (r *Registry) Get(ctx context.Context, id string) (Device, error) {
	d, err := scanDevice(r.db.QueryRowContext(ctx, `SELECT `+deviceCols+` FROM devices WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Device{}, fmt.Errorf("registry: device %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Device{}, fmt.Errorf("registry: get %q: %w", id, err)
	}
	r.overlaySeen(&d)
	return d, nil
}

// ByTasmotaTopic returns the device a Tasmota topic is mapped to.
func (r *Registry) ByTasmotaTopic(ctx context.Context, topic string) (Device, error) {
	d, err := scanDevice(r.db.QueryRowContext(ctx, `SELECT `+deviceCols+` FROM devices WHERE tasmota_topic = ?`, topic))
	if errors.Is(err, sql.ErrNoRows) {
		return Device{}, fmt.Errorf("registry: tasmota topic %q: %w", topic, ErrNotFound)
	}
	if err != nil {
		return Device{}, fmt.Errorf("registry: tasmota topic %q: %w", topic, err)
	}
	r.overlaySeen(&d)
	return d, nil
}

// List returns every device, ordered by id.
func (r *Registry) List(ctx context.Context) ([]Device, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT `+deviceCols+` FROM devices ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("registry: list: %w", err)
	}
	defer rows.Close()
	out := []Device{}
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("registry: list: %w", err)
		}
		r.overlaySeen(&d)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("registry: list: %w", err)
	}
	return out, nil
}

func (r *Registry) execOne(ctx context.Context, what, id, query string, args ...any) error {
	res, err := r.db.ExecContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("registry: %s %q: %w", what, id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("registry: %s %q: %w", what, id, err)
	}
	if n == 0 {
		return fmt.Errorf("registry: %s: device %q: %w", what, id, ErrNotFound)
	}
	return nil
}

// Revoke stops a device from authenticating (MQTT and OTA) at once. Its
// data stays; Rotate re-enables it with a new token.
func (r *Registry) Revoke(ctx context.Context, id string) error {
	now := r.opts.Now()
	return r.execOne(ctx, "revoke", id, `UPDATE devices SET revoked = coalesce(revoked, ?) WHERE id = ?`, ms(now), id)
}

// Rotate gives a device a new token, invalidating the old one, and clears
// a revocation. The token is returned only here.
func (r *Registry) Rotate(ctx context.Context, id string) (string, error) {
	tok, h := newToken("lwd_")
	now := r.opts.Now()
	return tok, r.execOne(ctx, "rotate", id, `UPDATE devices SET token_hash = ?, token_created = ?, revoked = NULL WHERE id = ?`, h, ms(now), id)
}

// Delete removes a device and its credential. With purge, it also queues
// the deletion of its stored series, which Run (or DrainPurges) hands to
// the store: the process that owns the store may be another one.
func (r *Registry) Delete(ctx context.Context, id string, purge bool) error {
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("registry: delete %q: %w", id, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM devices WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("registry: delete %q: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("registry: delete: device %q: %w", id, ErrNotFound)
	}
	if purge {
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO purges (device, requested) VALUES (?, ?)`, id, ms(r.opts.Now())); err != nil {
			return fmt.Errorf("registry: queue purge of %q: %w", id, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("registry: delete %q: %w", id, err)
	}
	r.seenMu.Lock()
	delete(r.seen, id)
	r.seenMu.Unlock()
	return nil
}

// Purge is a queued deletion of a device's series.
type Purge struct {
	Device    string    `json:"device"`
	Requested time.Time `json:"requested"`
}

// PendingPurges lists queued purges, oldest first.
func (r *Registry) PendingPurges(ctx context.Context) ([]Purge, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT device, requested FROM purges ORDER BY requested, device`)
	if err != nil {
		return nil, fmt.Errorf("registry: purges: %w", err)
	}
	defer rows.Close()
	var out []Purge
	for rows.Next() {
		var p Purge
		var req int64
		if err := rows.Scan(&p.Device, &req); err != nil {
			return nil, fmt.Errorf("registry: purges: %w", err)
		}
		p.Requested = time.UnixMilli(req).UTC()
		out = append(out, p)
	}
	return out, rows.Err()
}

// DrainPurges hands each pending purge to p and forgets the ones it
// completed. It stops at the first failure (kept for the next pass).
func (r *Registry) DrainPurges(ctx context.Context, p Purger) (int, error) {
	ps, err := r.PendingPurges(ctx)
	if err != nil {
		return 0, err
	}
	for i, pg := range ps {
		if err := p.PurgeDevice(ctx, pg.Device, pg.Requested); err != nil {
			return i, fmt.Errorf("registry: purge series of %q: %w", pg.Device, err)
		}
		if _, err := r.db.ExecContext(ctx, `DELETE FROM purges WHERE device = ? AND requested = ?`, pg.Device, ms(pg.Requested)); err != nil {
			return i, fmt.Errorf("registry: purge of %q done: %w", pg.Device, err)
		}
	}
	return len(ps), nil
}

// SetFirmware records the firmware version a device reported.
func (r *Registry) SetFirmware(ctx context.Context, id, version string) error {
	if len(version) > 64 {
		return fmt.Errorf("%w firmware version: longer than 64 characters", ErrInvalid)
	}
	return r.execOne(ctx, "set firmware", id, `UPDATE devices SET firmware = ? WHERE id = ?`, version, id)
}

// TouchLastSeen notes that a device was seen. It only updates memory (a
// map under a mutex), so it is cheap enough for every connect and publish;
// Run or FlushLastSeen writes the batch. Get and List of this Registry see
// the value at once, other processes after the next flush.
func (r *Registry) TouchLastSeen(id string, at time.Time) {
	r.seenMu.Lock()
	if at.After(r.seen[id]) {
		r.seen[id] = at
	}
	r.seenMu.Unlock()
}

// FlushLastSeen writes batched last-seen times in one transaction.
func (r *Registry) FlushLastSeen(ctx context.Context) error {
	r.seenMu.Lock()
	batch := r.seen
	r.seen = make(map[string]time.Time, len(batch))
	r.seenMu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	err := r.writeSeen(ctx, batch)
	if err != nil { // keep the batch for the next try
		r.seenMu.Lock()
		for id, t := range batch {
			if t.After(r.seen[id]) {
				r.seen[id] = t
			}
		}
		r.seenMu.Unlock()
	}
	return err
}

func (r *Registry) writeSeen(ctx context.Context, batch map[string]time.Time) error {
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("registry: flush last seen: %w", err)
	}
	defer tx.Rollback()
	st, err := tx.PrepareContext(ctx, `UPDATE devices SET last_seen = max(coalesce(last_seen, 0), ?) WHERE id = ?`)
	if err != nil {
		return fmt.Errorf("registry: flush last seen: %w", err)
	}
	defer st.Close()
	for id, t := range batch {
		if _, err := st.ExecContext(ctx, ms(t), id); err != nil {
			return fmt.Errorf("registry: flush last seen: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("registry: flush last seen: %w", err)
	}
	return nil
}

// Authenticate checks an MQTT username and password: a device (username =
// device id, password = its token) or the admin identity. Unknown users,
// wrong tokens and revoked devices all fail with an error wrapping
// ErrBadCredentials (a revoked device's also wraps ErrRevoked).
func (r *Registry) Authenticate(ctx context.Context, user, token string) (Principal, error) {
	h := digest(token)
	var stored []byte
	var revoked sql.NullInt64
	var addrs string
	var topic sql.NullString
	err := r.db.QueryRowContext(ctx, `SELECT token_hash, revoked, addrs, tasmota_topic FROM devices WHERE id = ?`, user).
		Scan(&stored, &revoked, &addrs, &topic)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return r.authenticateAdmin(ctx, user, h)
	case err != nil:
		return Principal{}, fmt.Errorf("registry: authenticate %q: %w", user, err)
	}
	if subtle.ConstantTimeCompare(stored, h) != 1 {
		return Principal{}, fmt.Errorf("registry: device %q: %w", user, ErrBadCredentials)
	}
	if revoked.Valid {
		return Principal{}, fmt.Errorf("registry: device %q: %w: %w", user, ErrRevoked, ErrBadCredentials)
	}
	a, err := parseAddrs(addrs)
	if err != nil {
		return Principal{}, fmt.Errorf("registry: device %q: %w", user, err)
	}
	return Principal{ID: user, Addrs: a, TasmotaTopic: topic.String}, nil
}

func (r *Registry) authenticateAdmin(ctx context.Context, user string, h []byte) (Principal, error) {
	var stored []byte
	err := r.db.QueryRowContext(ctx, `SELECT token_hash FROM admins WHERE name = ?`, user).Scan(&stored)
	if errors.Is(err, sql.ErrNoRows) {
		return Principal{}, fmt.Errorf("registry: user %q: %w", user, ErrBadCredentials)
	}
	if err != nil {
		return Principal{}, fmt.Errorf("registry: authenticate %q: %w", user, err)
	}
	if subtle.ConstantTimeCompare(stored, h) != 1 {
		return Principal{}, fmt.Errorf("registry: user %q: %w", user, ErrBadCredentials)
	}
	return Principal{ID: user, Admin: true}, nil
}

// DeviceForToken returns the device a bearer token belongs to (OTA). A
// revoked device's token fails with ErrRevoked and ErrBadCredentials.
func (r *Registry) DeviceForToken(ctx context.Context, token string) (string, error) {
	h := digest(token)
	var id string
	var stored []byte
	var revoked sql.NullInt64
	err := r.db.QueryRowContext(ctx, `SELECT id, token_hash, revoked FROM devices WHERE token_hash = ?`, h).Scan(&id, &stored, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("registry: token: %w", ErrBadCredentials)
	}
	if err != nil {
		return "", fmt.Errorf("registry: token: %w", err)
	}
	if subtle.ConstantTimeCompare(stored, h) != 1 { // defence in depth; the lookup matched already
		return "", fmt.Errorf("registry: token: %w", ErrBadCredentials)
	}
	if revoked.Valid {
		return "", fmt.Errorf("registry: device %q: %w: %w", id, ErrRevoked, ErrBadCredentials)
	}
	return id, nil
}

// TasmotaDevice returns the device id a Tasmota topic is mapped to and the
// time zone of its clock (UTC when none was given). Its method value fits
// ingest's TasmotaLookup.
func (r *Registry) TasmotaDevice(ctx context.Context, topic string) (string, *time.Location, error) {
	d, err := r.ByTasmotaTopic(ctx, topic)
	if err != nil {
		return "", nil, err
	}
	if d.TimeZone == "" {
		return d.ID, time.UTC, nil
	}
	loc, err := time.LoadLocation(d.TimeZone)
	if err != nil {
		return "", nil, fmt.Errorf("registry: device %q time zone: %w", d.ID, err)
	}
	return d.ID, loc, nil
}
