package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"loadwatch/internal/backup"
)

// importCmd is `loadwatch import`: readings CSV files into a data
// directory's store.
type importCmd struct {
	Data  string   `required:"" type:"path" placeholder:"DIR" help:"Data directory whose store receives the readings (the server must not be running on it)."`
	Files []string `arg:"" placeholder:"FILE" help:"Readings CSV files ('-' reads standard input)."`

	stdin io.Reader // test hook
	out   io.Writer
}

func (c *importCmd) Run(ctx context.Context) error {
	out := c.out
	if out == nil {
		out = os.Stderr
	}
	st, err := backup.OpenStore(c.Data, false, storeOptionsForTools())
	if err != nil {
		if errors.Is(err, backup.ErrServing) {
			return fmt.Errorf("import: %w; stop it first", err)
		}
		return fmt.Errorf("import: %w", err)
	}
	var errs []error
	for _, name := range c.Files {
		errs = append(errs, c.importFile(ctx, st, name, out))
	}
	errs = append(errs, st.Close())
	return errors.Join(errs...)
}

func (c *importCmd) importFile(ctx context.Context, st backup.Store, name string, out io.Writer) error {
	var r io.Reader
	if name == "-" {
		r = c.stdin
		if r == nil {
			r = os.Stdin
		}
	} else {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		defer f.Close()
		r = f
	}
	is, err := backup.Import(ctx, st, r)
	devs := make([]string, 0, len(is.Devices))
	for d, n := range is.Devices {
		devs = append(devs, fmt.Sprintf("%s %d", d, n))
	}
	sort.Strings(devs)
	fmt.Fprintf(out, "loadwatch import: %s: %d readings (%s), %d samples", name, is.Rows, strings.Join(devs, ", "), is.Samples)
	if is.LabelsKept > 0 {
		fmt.Fprintf(out, ", %d labels not applied (a class is already stored then)", is.LabelsKept)
	}
	if is.Refused > 0 {
		fmt.Fprintf(out, ", %d samples refused (first: %v)", is.Refused, is.First)
	}
	fmt.Fprintln(out)
	if err != nil {
		return fmt.Errorf("import: %s: %w", name, err)
	}
	return nil
}
