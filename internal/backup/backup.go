package backup

import (
	"archive/tar"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"loadwatch/internal/registry"
	"loadwatch/internal/store"
)

// Snapshotter writes a consistent copy of the open store into a directory
// (*store.Store implements it).
type Snapshotter interface {
	Snapshot(dir string) error
}

// Names inside a data directory and a backup. They follow internal/server
// (tsdb/, model.json, api-token.json, ota/) and internal/registry
// (registry.db, the admin credential file).
const (
	StoreDir     = "tsdb"
	ManifestFile = "loadwatch-backup.json"
	// OTADir is copied file by file: the release store only ever adds
	// files and rewrites small ones atomically.
	OTADir = "ota"
	// ModelsDir holds the retrained models and the ACTIVE pointer
	// (internal/server.ModelsDir, internal/labels); also copied file by file.
	ModelsDir = "models"
)

// smallFiles are copied as they are when present: the default model, the
// API token, the admin credential and the labelled spans of the dashboard.
var smallFiles = []string{"model.json", "api-token.json", registry.AdminFile, "labels.json"}

// trees are directories copied file by file when present.
var trees = []string{OTADir, ModelsDir}

// Manifest describes a backup (ManifestFile at its top).
type Manifest struct {
	Format  int       `json:"format"` // ManifestFormat
	Created time.Time `json:"created"`
	// Files lists everything copied besides the store and the registry.
	Files []string `json:"files"`
	// Store and Registry are false when the data directory had none.
	Store    bool `json:"store"`
	Registry bool `json:"registry"`
}

// ManifestFormat is the version of the backup layout.
const ManifestFormat = 1

// ErrNotEmpty is returned when a backup or restore target already has
// files in it.
var ErrNotEmpty = errors.New("target is not empty")

// ErrNotBackup is returned for a directory or file that is not a backup.
var ErrNotBackup = errors.New("not a loadwatch backup")

// Create writes a backup of the data directory dataDir into out, which
// must not exist or be empty. st is the store open on dataDir/tsdb (the
// running server's, or one the caller opened); nil means the data
// directory has no store. The store is copied with a TSDB snapshot
// (blocks and the in-memory head: everything Append acknowledged), the
// registry with SQLite's VACUUM INTO inside one read transaction, so each
// is consistent on its own while the server keeps writing; the registry is
// taken first, so a device registered during the backup may have data but
// no entry, never the reverse. The broker's session store is not copied:
// agents re-subscribe on every connection.
func Create(ctx context.Context, dataDir string, st Snapshotter, out string) (Manifest, error) {
	m := Manifest{Format: ManifestFormat, Created: time.Now().UTC().Truncate(time.Second), Files: []string{}}
	if err := emptyDir(out); err != nil {
		return m, fmt.Errorf("backup: %w", err)
	}
	if err := os.MkdirAll(out, 0o700); err != nil {
		return m, fmt.Errorf("backup: %w", err)
	}
	regPath := registry.Path(dataDir)
	if _, err := os.Stat(regPath); err == nil {
		if err := vacuumInto(ctx, regPath, filepath.Join(out, registry.FileName)); err != nil {
			return m, fmt.Errorf("backup: registry: %w", err)
		}
		m.Registry = true
	}
	if st != nil {
		if err := st.Snapshot(filepath.Join(out, StoreDir)); err != nil {
			return m, fmt.Errorf("backup: %w", err)
		}
		m.Store = true
	}
	for _, f := range smallFiles {
		err := copyFile(filepath.Join(dataDir, f), filepath.Join(out, f))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return m, fmt.Errorf("backup: %w", err)
		}
		m.Files = append(m.Files, f)
	}
	for _, dir := range trees {
		fi, err := os.Stat(filepath.Join(dataDir, dir))
		if err != nil || !fi.IsDir() {
			continue
		}
		files, err := copyTree(filepath.Join(dataDir, dir), filepath.Join(out, dir))
		if err != nil {
			return m, fmt.Errorf("backup: %w", err)
		}
		for _, f := range files {
			m.Files = append(m.Files, filepath.ToSlash(filepath.Join(dir, f)))
		}
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := writeFileSync(filepath.Join(out, ManifestFile), append(b, '\n')); err != nil {
		return m, fmt.Errorf("backup: %w", err)
	}
	return m, nil
}

// vacuumInto copies the SQLite database at src into dst (a new file)
// with VACUUM INTO: a consistent, compacted copy taken while other
// connections, also in other processes, keep writing.
func vacuumInto(ctx context.Context, src, dst string) error {
	// The driver is registered by internal/registry (modernc.org/sqlite).
	db, err := sql.Open("sqlite", "file:"+src+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", dst); err != nil {
		return err
	}
	return os.Chmod(dst, 0o600)
}

// emptyDir returns nil when dir does not exist or is an empty directory.
func emptyDir(dir string) error {
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case len(ents) > 0:
		return fmt.Errorf("%s: %w", dir, ErrNotEmpty)
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	outF, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm()|0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(outF, in); err != nil {
		outF.Close()
		return err
	}
	if err := outF.Sync(); err != nil {
		outF.Close()
		return err
	}
	return outF.Close()
}

// copyTree copies the regular files below src into dst and returns their
// paths relative to src. Temporary files (*.tmp) are left out.
func copyTree(src, dst string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		case !d.Type().IsRegular() || strings.HasSuffix(p, ".tmp"):
			return nil
		}
		if err := copyFile(p, filepath.Join(dst, rel)); err != nil {
			return err
		}
		files = append(files, rel)
		return nil
	})
	return files, err
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadManifest reads and checks the manifest of a backup directory.
func ReadManifest(dir string) (Manifest, error) {
	var m Manifest
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return m, fmt.Errorf("%w: %s: %w", ErrNotBackup, dir, err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%w: %s: %w", ErrNotBackup, ManifestFile, err)
	}
	if m.Format != ManifestFormat {
		return m, fmt.Errorf("%w: format %d, this binary reads %d", ErrNotBackup, m.Format, ManifestFormat)
	}
	return m, nil
}

// Restore puts the backup in dir into dataDir, which must not exist or be
// empty, then opens the restored store and registry once to check them
// (the store replays its snapshot's head, the registry runs SQLite's
// integrity check).
func Restore(ctx context.Context, dir, dataDir string) (Manifest, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return m, fmt.Errorf("restore: %w", err)
	}
	if err := emptyDir(dataDir); err != nil {
		return m, fmt.Errorf("restore: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return m, fmt.Errorf("restore: %w", err)
	}
	if m.Registry {
		if err := copyFile(filepath.Join(dir, registry.FileName), registry.Path(dataDir)); err != nil {
			return m, fmt.Errorf("restore: %w", err)
		}
	}
	if m.Store {
		if _, err := copyTree(filepath.Join(dir, StoreDir), filepath.Join(dataDir, StoreDir)); err != nil {
			return m, fmt.Errorf("restore: %w", err)
		}
	}
	for _, f := range m.Files {
		if !filepath.IsLocal(filepath.FromSlash(f)) {
			return m, fmt.Errorf("restore: %w: file %q outside the backup", ErrNotBackup, f)
		}
		if err := copyFile(filepath.Join(dir, filepath.FromSlash(f)), filepath.Join(dataDir, filepath.FromSlash(f))); err != nil {
			return m, fmt.Errorf("restore: %w", err)
		}
	}
	if err := Check(ctx, dataDir, m); err != nil {
		return m, fmt.Errorf("restore: %w", err)
	}
	return m, nil
}

// Check opens the store and the registry of a data directory once.
func Check(ctx context.Context, dataDir string, m Manifest) error {
	if m.Store {
		st, err := store.Open(filepath.Join(dataDir, StoreDir), store.Options{})
		if err != nil {
			return err
		}
		if err := st.Close(); err != nil {
			return err
		}
	}
	if m.Registry {
		db, err := sql.Open("sqlite", "file:"+registry.Path(dataDir))
		if err != nil {
			return err
		}
		defer db.Close()
		var res string
		if err := db.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&res); err != nil {
			return fmt.Errorf("registry: %w", err)
		}
		if res != "ok" {
			return fmt.Errorf("registry integrity check: %s", res)
		}
	}
	return nil
}

// WriteTar writes the backup directory dir as a tar stream (regular files
// and directories only). The manifest is the last entry, so a stream cut
// short has none and is refused by Restore.
func WriteTar(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	add := func(p, rel string, fi fs.FileInfo) error {
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			h.Name += "/"
		}
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.IsDir() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." || rel == ManifestFile {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if !fi.IsDir() && !fi.Mode().IsRegular() {
			return nil
		}
		return add(p, rel, fi)
	})
	if err == nil {
		p := filepath.Join(dir, ManifestFile)
		var fi fs.FileInfo
		if fi, err = os.Stat(p); err == nil {
			err = add(p, ManifestFile, fi)
		}
	}
	if err != nil {
		return fmt.Errorf("backup: tar: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("backup: tar: %w", err)
	}
	return nil
}

// ExtractTar unpacks a tar stream written by WriteTar into dir, which must
// not exist or be empty. Entries that would land outside dir, links and
// other special files are refused.
func ExtractTar(r io.Reader, dir string) error {
	if err := emptyDir(dir); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("backup: tar: %w", err)
		}
		name := filepath.FromSlash(strings.TrimSuffix(h.Name, "/"))
		if !filepath.IsLocal(name) {
			return fmt.Errorf("backup: tar: %w: entry %q outside the target", ErrNotBackup, h.Name)
		}
		p := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o700); err != nil {
				return fmt.Errorf("backup: %w", err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return fmt.Errorf("backup: %w", err)
			}
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("backup: %w", err)
			}
			_, err = io.Copy(f, tr)
			if err == nil {
				err = f.Sync()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("backup: %w", err)
			}
		default:
			return fmt.Errorf("backup: tar: %w: entry %q of type %q", ErrNotBackup, h.Name, h.Typeflag)
		}
	}
}

// ErrServing is returned by OpenStore when another process (a running
// `loadwatch serve` or demo) holds the store.
var ErrServing = errors.New("the store is in use by another process (is loadwatch serve running on this data directory?)")

// OpenStore opens the store of a data directory for a command-line tool.
// With mustExist it refuses a data directory without a store rather than
// creating an empty one. The TSDB's lock file tells whether a server holds
// it (ErrServing).
func OpenStore(dataDir string, mustExist bool, o store.Options) (*store.Store, error) {
	dir := filepath.Join(dataDir, StoreDir)
	if mustExist {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("no store at %s (wrong --data?): %w", dir, err)
		}
	}
	st, err := store.Open(dir, o)
	if err != nil && strings.Contains(err.Error(), "lock DB directory") {
		return nil, fmt.Errorf("%w: %w", ErrServing, err)
	}
	return st, err
}
