package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"loadwatch/internal/backup"
	"loadwatch/internal/store"
)

// exportCmd is `loadwatch export`: one device's stored readings as the
// readings CSV (labelled with the stored class), for labelling and
// training.
type exportCmd struct {
	Device string `required:"" placeholder:"ID" help:"Device id (a sub-device as <id>.<addr>)."`
	From   string `required:"" placeholder:"T" help:"Start, inclusive: RFC 3339 (2026-11-29T10:00:00Z), a date (2026-11-29, UTC) or a duration before now (24h)."`
	To     string `default:"now" placeholder:"T" help:"End, inclusive: as --from, or 'now'."`
	Data   string `type:"path" placeholder:"DIR" xor:"source" help:"Read the store of this data directory (the server must not be running on it; use --server then)."`
	Server string `placeholder:"URL" xor:"source" help:"Read through a running server's query API, e.g. http://127.0.0.1:8080."`
	Token  string `env:"LOADWATCH_API_TOKEN" help:"API token for --server when it requires one for reads (--auth-read)."`
	Out    string `short:"o" type:"path" placeholder:"FILE" help:"Write the CSV here (default: standard output)."`

	stdout io.Writer // test hook
}

// parseWhen reads an RFC 3339 time, a date (UTC midnight), "now" or a
// duration before now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "now" {
		return now, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(s, "-")); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2026-11-29T10:00:00Z), a date (2026-11-29), 'now' or a duration before now (24h)", s)
}

func (c *exportCmd) Run(ctx context.Context) error {
	now := time.Now()
	from, err := parseWhen(c.From, now)
	if err != nil {
		return fmt.Errorf("export: --from: %w", err)
	}
	to, err := parseWhen(c.To, now)
	if err != nil {
		return fmt.Errorf("export: --to: %w", err)
	}
	var q backup.Querier
	switch {
	case c.Server != "":
		q = backup.HTTPQuerier{Base: c.Server, Token: c.Token}
	case c.Data != "":
		st, err := backup.OpenStore(c.Data, true, storeOptionsForTools())
		if err != nil {
			if errors.Is(err, backup.ErrServing) {
				return fmt.Errorf("export: %w; export through it with --server URL", err)
			}
			return fmt.Errorf("export: %w", err)
		}
		defer st.Close()
		q = st
	default:
		return errors.New("export: give --data DIR or --server URL")
	}
	w := c.stdout
	if w == nil {
		w = os.Stdout
	}
	var tmp *os.File
	if c.Out != "" {
		if tmp, err = os.CreateTemp(filepath.Dir(c.Out), ".export-*.csv"); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		w = tmp
	}
	st, err := backup.Export(ctx, q, w, backup.ExportOptions{Device: c.Device, From: from, To: to})
	if err != nil {
		return err
	}
	if tmp != nil {
		if err := tmp.Sync(); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		if err := tmp.Close(); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		if err := os.Rename(tmp.Name(), c.Out); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	fmt.Fprintf(os.Stderr, "loadwatch export: %d readings of %s (%d labelled) from %s to %s", st.Rows, c.Device, st.Labelled,
		from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
	if st.Skipped > 0 {
		fmt.Fprintf(os.Stderr, "; %d timestamps without power skipped", st.Skipped)
	}
	fmt.Fprintln(os.Stderr)
	return nil
}

// storeOptionsForTools opens a data directory's store for a command-line
// tool. The TSDB applies retention when it opens, so a tool must never ask
// for less than the server keeps: it asks for ten years (and accepts
// samples that far back, for import).
func storeOptionsForTools() store.Options {
	return store.Options{Retention: backup.ImportWindow, OutOfOrderWindow: backup.ImportWindow}
}
