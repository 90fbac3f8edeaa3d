package registry

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Dashboard users: people choose these passwords, so they get a slow,
// salted hash. PBKDF2-HMAC-SHA256 is in the standard library (Go 1.24+),
// which keeps the registry free of golang.org/x/crypto; argon2id would resist
// GPUs better. The stored form names the algorithm and iteration count
// ("pbkdf2-sha256$<iter>$<salt>$<hash>"), so the cost can be raised or the
// algorithm changed later without invalidating existing hashes.

// MinPasswordLen is the shortest dashboard password accepted.
const MinPasswordLen = 10

// User is a dashboard user.
type User struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

func validateUserName(name string) error {
	if name == "" || len(name) > 64 || strings.ContainsAny(name, " \t\r\n:") {
		return fmt.Errorf("%w user name %q: want 1 to 64 characters without spaces or ':'", ErrInvalid, name)
	}
	return nil
}

func (r *Registry) hashPassword(pw string) (string, error) {
	if len(pw) < MinPasswordLen {
		return "", fmt.Errorf("%w password: shorter than %d characters", ErrInvalid, MinPasswordLen)
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	iter := r.opts.PasswordIterations
	k, err := pbkdf2.Key(sha256.New, pw, salt, iter, 32)
	if err != nil {
		return "", fmt.Errorf("registry: password hash: %w", err)
	}
	enc := base64.RawStdEncoding
	return "pbkdf2-sha256$" + strconv.Itoa(iter) + "$" + enc.EncodeToString(salt) + "$" + enc.EncodeToString(k), nil
}

func checkPassword(stored, pw string) error {
	parts := strings.Split(stored, "$")
	if len(parts) != 4 || parts[0] != "pbkdf2-sha256" {
		return fmt.Errorf("registry: stored password hash: %w format", ErrInvalid)
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < 1 {
		return fmt.Errorf("registry: stored password hash: %w iteration count", ErrInvalid)
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(parts[2])
	want, err2 := enc.DecodeString(parts[3])
	if err := errors.Join(err1, err2); err != nil || len(want) == 0 {
		return fmt.Errorf("registry: stored password hash: %w encoding", ErrInvalid)
	}
	got, err := pbkdf2.Key(sha256.New, pw, salt, iter, len(want))
	if err != nil {
		return fmt.Errorf("registry: password hash: %w", err)
	}
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return ErrBadCredentials
	}
	return nil
}

// AddUser adds a dashboard user.
func (r *Registry) AddUser(ctx context.Context, name, password string) error {
	if err := validateUserName(name); err != nil {
		return err
	}
	h, err := r.hashPassword(password)
	if err != nil {
		return err
	}
	_, err = r.db.ExecContext(ctx, `INSERT INTO users (name, password_hash, created) VALUES (?, ?, ?)`, name, h, ms(r.opts.Now()))
	if isUnique(err) {
		return fmt.Errorf("registry: user %q: %w", name, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("registry: add user %q: %w", name, err)
	}
	return nil
}

// SetPassword changes a dashboard user's password.
func (r *Registry) SetPassword(ctx context.Context, name, password string) error {
	h, err := r.hashPassword(password)
	if err != nil {
		return err
	}
	res, err := r.db.ExecContext(ctx, `UPDATE users SET password_hash = ? WHERE name = ?`, h, name)
	if err != nil {
		return fmt.Errorf("registry: set password %q: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("registry: user %q: %w", name, ErrNotFound)
	}
	return nil
}

// CheckPassword verifies a dashboard login. An unknown user and a wrong
// password both fail with ErrBadCredentials and cost the same hash.
func (r *Registry) CheckPassword(ctx context.Context, name, password string) error {
	var stored string
	err := r.db.QueryRowContext(ctx, `SELECT password_hash FROM users WHERE name = ?`, name).Scan(&stored)
	if errors.Is(err, sql.ErrNoRows) {
		// Spend the same time as a real check, so timing does not tell
		// which user names exist.
		dummy, herr := r.hashPassword(strings.Repeat("x", MinPasswordLen))
		if herr == nil {
			_ = checkPassword(dummy, password)
		}
		return fmt.Errorf("registry: user %q: %w", name, ErrBadCredentials)
	}
	if err != nil {
		return fmt.Errorf("registry: check password %q: %w", name, err)
	}
	if err := checkPassword(stored, password); err != nil {
		return fmt.Errorf("registry: user %q: %w", name, err)
	}
	return nil
}

// DeleteUser removes a dashboard user.
func (r *Registry) DeleteUser(ctx context.Context, name string) error {
	res, err := r.db.ExecContext(ctx, `DELETE FROM users WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("registry: delete user %q: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("registry: user %q: %w", name, ErrNotFound)
	}
	return nil
}

// ListUsers returns the dashboard users by name.
func (r *Registry) ListUsers(ctx context.Context) ([]User, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT name, created FROM users ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("registry: list users: %w", err)
	}
	defer rows.Close()
	out := []User{}
	for rows.Next() {
		var u User
		var c int64
		if err := rows.Scan(&u.Name, &c); err != nil {
			return nil, fmt.Errorf("registry: list users: %w", err)
		}
		u.Created = time.UnixMilli(c).UTC()
		out = append(out, u)
	}
	return out, rows.Err()
}

// Scope is a permission carried by an API token.
type Scope string

// The scopes an API token can carry. ScopeAdmin implies all others.
const (
	ScopeRead    Scope = "read"    // query API, devices, events
	ScopeWrite   Scope = "write"   // commands to devices
	ScopeDevices Scope = "devices" // registry changes
	ScopeOTA     Scope = "ota"     // publish, promote and halt releases
	ScopeAdmin   Scope = "admin"   // everything
)

var allScopes = []Scope{ScopeRead, ScopeWrite, ScopeDevices, ScopeOTA, ScopeAdmin}

// APIToken describes an API token (never its secret).
type APIToken struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Scopes  []Scope   `json:"scopes"`
	Created time.Time `json:"created"`
	Revoked time.Time `json:"revoked,omitzero"`
}

// Has reports whether the token grants s.
func (t APIToken) Has(s Scope) bool {
	return slices.Contains(t.Scopes, s) || slices.Contains(t.Scopes, ScopeAdmin)
}

// CreateAPIToken makes an API token with the given scopes and returns its
// secret, which is shown only here.
func (r *Registry) CreateAPIToken(ctx context.Context, name string, scopes ...Scope) (APIToken, string, error) {
	if name == "" || len(name) > 64 {
		return APIToken{}, "", fmt.Errorf("%w api token name %q: want 1 to 64 characters", ErrInvalid, name)
	}
	if len(scopes) == 0 {
		return APIToken{}, "", fmt.Errorf("%w api token: no scope", ErrInvalid)
	}
	ss := make([]string, len(scopes))
	for i, s := range scopes {
		if !slices.Contains(allScopes, s) {
			return APIToken{}, "", fmt.Errorf("%w scope %q (have %v)", ErrInvalid, s, allScopes)
		}
		ss[i] = string(s)
	}
	var idb [6]byte
	rand.Read(idb[:])
	id := base64.RawURLEncoding.EncodeToString(idb[:])
	tok, h := newToken("lwt_")
	now := r.opts.Now().UTC().Truncate(time.Millisecond)
	_, err := r.db.ExecContext(ctx, `INSERT INTO api_tokens (id, name, token_hash, scopes, created) VALUES (?, ?, ?, ?, ?)`,
		id, name, h, strings.Join(ss, ","), ms(now))
	if err != nil {
		return APIToken{}, "", fmt.Errorf("registry: create api token: %w", err)
	}
	return APIToken{ID: id, Name: name, Scopes: slices.Clone(scopes), Created: now}, tok, nil
}

func scanAPIToken(s scanner) (APIToken, error) {
	var t APIToken
	var scopes string
	var c int64
	var rev sql.NullInt64
	if err := s.Scan(&t.ID, &t.Name, &scopes, &c, &rev); err != nil {
		return APIToken{}, err
	}
	for _, s := range strings.Split(scopes, ",") {
		t.Scopes = append(t.Scopes, Scope(s))
	}
	t.Created = time.UnixMilli(c).UTC()
	t.Revoked = fromMS(rev)
	return t, nil
}

// CheckAPIToken verifies a bearer token and that it grants need.
func (r *Registry) CheckAPIToken(ctx context.Context, secret string, need Scope) (APIToken, error) {
	h := digest(secret)
	t, err := scanAPIToken(r.db.QueryRowContext(ctx, `SELECT id, name, scopes, created, revoked FROM api_tokens WHERE token_hash = ?`, h))
	if errors.Is(err, sql.ErrNoRows) {
		return APIToken{}, fmt.Errorf("registry: api token: %w", ErrBadCredentials)
	}
	if err != nil {
		return APIToken{}, fmt.Errorf("registry: api token: %w", err)
	}
	if !t.Revoked.IsZero() {
		return APIToken{}, fmt.Errorf("registry: api token %s: %w: %w", t.ID, ErrRevoked, ErrBadCredentials)
	}
	if !t.Has(need) {
		return t, fmt.Errorf("registry: api token %s lacks scope %q: %w", t.ID, need, ErrForbidden)
	}
	return t, nil
}

// RevokeAPIToken disables an API token.
func (r *Registry) RevokeAPIToken(ctx context.Context, id string) error {
	res, err := r.db.ExecContext(ctx, `UPDATE api_tokens SET revoked = coalesce(revoked, ?) WHERE id = ?`, ms(r.opts.Now()), id)
	if err != nil {
		return fmt.Errorf("registry: revoke api token %q: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("registry: api token %q: %w", id, ErrNotFound)
	}
	return nil
}

// ListAPITokens returns every API token, oldest first.
func (r *Registry) ListAPITokens(ctx context.Context) ([]APIToken, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT id, name, scopes, created, revoked FROM api_tokens ORDER BY created, id`)
	if err != nil {
		return nil, fmt.Errorf("registry: list api tokens: %w", err)
	}
	defer rows.Close()
	out := []APIToken{}
	for rows.Next() {
		t, err := scanAPIToken(rows)
		if err != nil {
			return nil, fmt.Errorf("registry: list api tokens: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}
