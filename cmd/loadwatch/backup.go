package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"loadwatch/internal/backup"
	"loadwatch/internal/server"
)

// backupCmd is `loadwatch backup`: a consistent copy of a data directory's
// store and registry (and its model, credentials and OTA releases), also
// while the server runs.
type backupCmd struct {
	Data   string `required:"" type:"path" placeholder:"DIR" help:"Data directory to back up."`
	Out    string `required:"" type:"path" placeholder:"DIR|FILE.tar" help:"Where to write the backup: a new or empty directory, or a tar file (name ending in .tar)."`
	Server string `placeholder:"URL" default:"http://127.0.0.1:8080" help:"When a server holds the store, ask it for the backup here (it streams a snapshot)."`
	Token  string `env:"LOADWATCH_API_TOKEN" help:"API token with scope admin for --server (default: the first-start token in DIR/api-token.json)."`

	out io.Writer // test hook
}

func isTar(name string) bool { return strings.HasSuffix(strings.ToLower(name), ".tar") }

func (c *backupCmd) Run(ctx context.Context) error {
	out := c.out
	if out == nil {
		out = os.Stderr
	}
	if _, err := os.Stat(c.Out); err == nil && isTar(c.Out) {
		return fmt.Errorf("backup: %s exists", c.Out)
	}
	st, err := backup.OpenStore(c.Data, true, storeOptionsForTools())
	if errors.Is(err, backup.ErrServing) {
		return c.live(ctx, out)
	}
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer st.Close()
	dir := c.Out
	if isTar(c.Out) {
		tmp, err := os.MkdirTemp(filepath.Dir(c.Out), ".backup-")
		if err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		defer os.RemoveAll(tmp)
		dir = filepath.Join(tmp, "b")
	}
	m, err := backup.Create(ctx, c.Data, st, dir)
	if err != nil {
		return err
	}
	if isTar(c.Out) {
		if err := writeAtomically(c.Out, func(w io.Writer) error { return backup.WriteTar(w, dir) }); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "loadwatch backup: %s -> %s (store %v, registry %v, %d other files)\n", c.Data, c.Out, m.Store, m.Registry, len(m.Files))
	return nil
}

// live asks the running server for the backup.
func (c *backupCmd) live(ctx context.Context, out io.Writer) error {
	tok := c.Token
	if tok == "" {
		var err error
		if tok, err = server.ReadAPIToken(c.Data); err != nil {
			return fmt.Errorf("backup: a server holds the store and no --token was given: %w", err)
		}
	}
	fmt.Fprintf(out, "loadwatch backup: a server holds the store; asking %s for a snapshot\n", c.Server)
	body, err := backup.Fetch(ctx, nil, c.Server, tok)
	if err != nil {
		return fmt.Errorf("%w (is %s the server running on %s? see --server)", err, c.Server, c.Data)
	}
	defer body.Close()
	if isTar(c.Out) {
		// Extract to check it is whole, then keep the tar.
		tmp, err := os.MkdirTemp(filepath.Dir(c.Out), ".backup-")
		if err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		defer os.RemoveAll(tmp)
		dir := filepath.Join(tmp, "b")
		if err := backup.ExtractTar(body, dir); err != nil {
			return err
		}
		if _, err := backup.ReadManifest(dir); err != nil {
			return fmt.Errorf("backup: the server's stream: %w", err)
		}
		if err := writeAtomically(c.Out, func(w io.Writer) error { return backup.WriteTar(w, dir) }); err != nil {
			return err
		}
	} else {
		if err := backup.ExtractTar(body, c.Out); err != nil {
			return err
		}
		if _, err := backup.ReadManifest(c.Out); err != nil {
			return fmt.Errorf("backup: the server's stream: %w", err)
		}
	}
	fmt.Fprintf(out, "loadwatch backup: %s -> %s\n", c.Data, c.Out)
	return nil
}

// writeAtomically writes a file through a temporary one and renames it.
func writeAtomically(path string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(f.Name())
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("backup: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

// restoreCmd is `loadwatch restore`: a backup into an empty data
// directory.
type restoreCmd struct {
	Data   string `required:"" type:"path" placeholder:"DIR" help:"Data directory to restore into: must not exist or be empty."`
	Backup string `arg:"" type:"path" placeholder:"BACKUP" help:"Backup directory or tar file written by 'loadwatch backup'."`

	out io.Writer // test hook
}

func (c *restoreCmd) Run(ctx context.Context) error {
	out := c.out
	if out == nil {
		out = os.Stderr
	}
	fi, err := os.Stat(c.Backup)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	dir := c.Backup
	if !fi.IsDir() {
		f, err := os.Open(c.Backup)
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		defer f.Close()
		// Unpack next to the target: same file system, and no large
		// copy in a small /tmp.
		parent := filepath.Dir(filepath.Clean(c.Data))
		if err := os.MkdirAll(parent, 0o700); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		tmp, err := os.MkdirTemp(parent, ".restore-")
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		defer os.RemoveAll(tmp)
		dir = filepath.Join(tmp, "b")
		if err := backup.ExtractTar(f, dir); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
	}
	m, err := backup.Restore(ctx, dir, c.Data)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "loadwatch restore: backup of %s restored into %s (store %v, registry %v, %d other files); start it with 'loadwatch serve --data %s'\n",
		m.Created.Format("2006-01-02 15:04:05 MST"), c.Data, m.Store, m.Registry, len(m.Files), c.Data)
	return nil
}
