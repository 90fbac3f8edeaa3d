package registry

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// AdminFile is the file, inside the data directory, that holds the admin
// identity's MQTT credential (mode 0600, JSON {"user": ..., "password": ...}).
const AdminFile = "admin-credentials.json"

// AdminCredential says where the admin identity's credential is.
type AdminCredential struct {
	User string `json:"user"`
	File string `json:"file"`
}

type adminFile struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// EnsureAdmin makes sure the admin/ingest identity exists. On first start
// it creates a random token and writes it to dataDir/admin-credentials.json
// (mode 0600): there is no default password. created reports whether it did;
// the caller should print the file's path then.
func (r *Registry) EnsureAdmin(ctx context.Context, dataDir string) (cred AdminCredential, created bool, err error) {
	cred = AdminCredential{User: AdminName, File: filepath.Join(dataDir, AdminFile)}
	var one int
	err = r.db.QueryRowContext(ctx, `SELECT 1 FROM admins WHERE name = ?`, AdminName).Scan(&one)
	if err == nil {
		return cred, false, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return cred, false, fmt.Errorf("registry: admin: %w", err)
	}
	err = r.writeAdmin(ctx, cred.File, `INSERT INTO admins (name, token_hash, created) VALUES (?, ?, ?)`)
	if isUnique(err) { // another process created it first
		return cred, false, nil
	}
	return cred, err == nil, err
}

// RotateAdmin replaces the admin token and rewrites the credential file.
func (r *Registry) RotateAdmin(ctx context.Context, dataDir string) (AdminCredential, error) {
	cred := AdminCredential{User: AdminName, File: filepath.Join(dataDir, AdminFile)}
	err := r.writeAdmin(ctx, cred.File, `INSERT INTO admins (name, token_hash, created) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET token_hash = excluded.token_hash, created = excluded.created`)
	return cred, err
}

// writeAdmin stages the credential file, stores the digest, then renames
// the file into place, so a stored token always has its file.
func (r *Registry) writeAdmin(ctx context.Context, path, query string) error {
	tok, h := newToken("lwa_")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("registry: admin credential: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".admin-*.tmp")
	if err != nil {
		return fmt.Errorf("registry: admin credential: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	b, _ := json.MarshalIndent(adminFile{User: AdminName, Password: tok}, "", "  ")
	_, werr := tmp.Write(append(b, '\n'))
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr, os.Chmod(tmp.Name(), 0o600)); err != nil {
		return fmt.Errorf("registry: admin credential: %w", err)
	}
	if _, err := r.db.ExecContext(ctx, query, AdminName, h, ms(r.opts.Now())); err != nil {
		return fmt.Errorf("registry: admin credential: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("registry: admin credential: %w", err)
	}
	return nil
}

// ReadAdminFile reads the admin credential file (for in-process clients
// such as an ingest subscriber or the demo).
func ReadAdminFile(path string) (user, password string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("registry: admin credential: %w", err)
	}
	var f adminFile
	if err := json.Unmarshal(b, &f); err != nil {
		return "", "", fmt.Errorf("registry: admin credential %s: %w", path, err)
	}
	if f.User == "" || f.Password == "" {
		return "", "", fmt.Errorf("registry: admin credential %s: %w: empty user or password", path, ErrInvalid)
	}
	return f.User, f.Password, nil
}
