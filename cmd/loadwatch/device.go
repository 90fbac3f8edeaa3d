package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"loadwatch/internal/registry"
)

// deviceCmd manages the device registry. It works while `loadwatch serve`
// runs on the same data directory (SQLite in WAL mode).
type deviceCmd struct {
	Add    deviceAddCmd    `cmd:"" help:"Register a device and print its token (shown once; stored hashed)."`
	List   deviceListCmd   `cmd:"" help:"List registered devices."`
	Show   deviceShowCmd   `cmd:"" help:"Show one device."`
	Revoke deviceRevokeCmd `cmd:"" help:"Stop a device from connecting (MQTT and OTA) at once; 'rotate' re-enables it."`
	Rotate deviceRotateCmd `cmd:"" help:"Give a device a new token (the old one stops working) and clear a revocation."`
	Delete deviceDeleteCmd `cmd:"" help:"Delete a device and its credential; --purge also deletes its stored series."`
}

// registryFlags are shared by every device subcommand.
type registryFlags struct {
	Data string `required:"" env:"LOADWATCH_DATA" placeholder:"DIR" help:"Data directory of the server (holds registry.db)."`
	JSON bool   `name:"json" help:"Print JSON instead of text."`
}

// open opens the registry. Only 'add' creates one: for the other commands
// a missing registry means a wrong --data, which should not pass silently.
func (f registryFlags) open(ctx context.Context, create bool) (*registry.Registry, error) {
	path := registry.Path(f.Data)
	if !create {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("no device registry at %s (wrong --data?): %w", path, err)
		}
	}
	return registry.Open(ctx, path, nil)
}

func devPrintJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

type deviceAddCmd struct {
	registryFlags
	ID           string `arg:"" help:"Device id: 1-64 of A-Z a-z 0-9 _ - (meter N reports as the derived id <ID>.<N>)."`
	Addr         []int  `sep:"," placeholder:"N,N" help:"Modbus addresses (1-247) of the device's meters; it may then report only those as <ID>.<N>."`
	TasmotaTopic string `placeholder:"TOPIC" help:"Map Tasmota's tele/<TOPIC>/SENSOR to this device."`
	TZ           string `name:"tz" placeholder:"ZONE" help:"Time zone of the Tasmota device's clock (e.g. Europe/Berlin); Tasmota's Time has none."`
}

func (c *deviceAddCmd) Run(ctx context.Context) error { return c.run(ctx, os.Stdout) }

func (c *deviceAddCmd) run(ctx context.Context, w io.Writer) error {
	r, err := c.open(ctx, true)
	if err != nil {
		return err
	}
	defer r.Close()
	d, tok, err := r.Add(ctx, registry.NewDevice{ID: c.ID, Addrs: c.Addr, TasmotaTopic: c.TasmotaTopic, TimeZone: c.TZ})
	if err != nil {
		return err
	}
	if c.JSON {
		return devPrintJSON(w, struct {
			ID    string `json:"id"`
			Token string `json:"token"`
		}{d.ID, tok})
	}
	_, err = fmt.Fprintf(w, "device %s added\ntoken: %s\n(shown once: it is the device's MQTT password and OTA bearer token; the registry keeps only its hash)\n", d.ID, tok)
	return err
}

type deviceListCmd struct {
	registryFlags
}

func (c *deviceListCmd) Run(ctx context.Context) error { return c.run(ctx, os.Stdout) }

func (c *deviceListCmd) run(ctx context.Context, w io.Writer) error {
	r, err := c.open(ctx, false)
	if err != nil {
		return err
	}
	defer r.Close()
	ds, err := r.List(ctx)
	if err != nil {
		return err
	}
	if c.JSON {
		return devPrintJSON(w, ds)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tADDRS\tFIRMWARE\tLAST SEEN\tTASMOTA")
	for _, d := range ds {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, devStatus(d), devAddrs(d.Addrs), devDash(d.Firmware), devWhen(d.LastSeen), devDash(d.TasmotaTopic))
	}
	return tw.Flush()
}

func devStatus(d registry.Device) string {
	if d.Revoked.IsZero() {
		return "active"
	}
	return "revoked"
}

func devAddrs(a []int) string {
	if len(a) == 0 {
		return "-"
	}
	s := make([]string, len(a))
	for i, v := range a {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func devDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func devWhen(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

type deviceShowCmd struct {
	registryFlags
	ID string `arg:"" help:"Device id."`
}

func (c *deviceShowCmd) Run(ctx context.Context) error { return c.run(ctx, os.Stdout) }

func (c *deviceShowCmd) run(ctx context.Context, w io.Writer) error {
	r, err := c.open(ctx, false)
	if err != nil {
		return err
	}
	defer r.Close()
	d, err := r.Get(ctx, c.ID)
	if err != nil {
		return err
	}
	if c.JSON {
		return devPrintJSON(w, d)
	}
	tz := d.TimeZone
	if d.TasmotaTopic != "" && tz == "" {
		tz = "UTC"
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id:\t%s\nstatus:\t%s\ncreated:\t%s\ntoken created:\t%s\naddresses:\t%s\nfirmware:\t%s\nlast seen:\t%s\ntasmota topic:\t%s\ntime zone:\t%s\n",
		d.ID, devStatus(d), devWhen(d.Created), devWhen(d.TokenCreated), devAddrs(d.Addrs), devDash(d.Firmware), devWhen(d.LastSeen), devDash(d.TasmotaTopic), devDash(tz))
	if !d.Revoked.IsZero() {
		fmt.Fprintf(tw, "revoked:\t%s\n", devWhen(d.Revoked))
	}
	return tw.Flush()
}

type deviceRevokeCmd struct {
	registryFlags
	ID string `arg:"" help:"Device id."`
}

func (c *deviceRevokeCmd) Run(ctx context.Context) error { return c.run(ctx, os.Stdout) }

func (c *deviceRevokeCmd) run(ctx context.Context, w io.Writer) error {
	r, err := c.open(ctx, false)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := r.Revoke(ctx, c.ID); err != nil {
		return err
	}
	if c.JSON {
		return devPrintJSON(w, map[string]any{"id": c.ID, "revoked": true})
	}
	_, err = fmt.Fprintf(w, "device %s revoked: new connections and OTA requests are refused (a live MQTT connection ends at its next reconnect)\n", c.ID)
	return err
}

type deviceRotateCmd struct {
	registryFlags
	ID string `arg:"" help:"Device id."`
}

func (c *deviceRotateCmd) Run(ctx context.Context) error { return c.run(ctx, os.Stdout) }

func (c *deviceRotateCmd) run(ctx context.Context, w io.Writer) error {
	r, err := c.open(ctx, false)
	if err != nil {
		return err
	}
	defer r.Close()
	tok, err := r.Rotate(ctx, c.ID)
	if err != nil {
		return err
	}
	if c.JSON {
		return devPrintJSON(w, struct {
			ID    string `json:"id"`
			Token string `json:"token"`
		}{c.ID, tok})
	}
	_, err = fmt.Fprintf(w, "device %s has a new token (the old one no longer works)\ntoken: %s\n(shown once)\n", c.ID, tok)
	return err
}

type deviceDeleteCmd struct {
	registryFlags
	ID    string `arg:"" help:"Device id."`
	Purge bool   `help:"Also delete the device's stored series (and its <ID>.<N> sub-devices'). The server that owns the store does it on its next pass."`
}

func (c *deviceDeleteCmd) Run(ctx context.Context) error { return c.run(ctx, os.Stdout) }

func (c *deviceDeleteCmd) run(ctx context.Context, w io.Writer) error {
	r, err := c.open(ctx, false)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := r.Delete(ctx, c.ID, c.Purge); err != nil {
		return err
	}
	if c.JSON {
		return devPrintJSON(w, map[string]any{"id": c.ID, "deleted": true, "purge_queued": c.Purge})
	}
	msg := fmt.Sprintf("device %s deleted", c.ID)
	if c.Purge {
		msg += "; deletion of its stored series queued (done by the server within seconds while it runs, or at its next start)"
	}
	_, err = fmt.Fprintln(w, msg)
	return err
}
