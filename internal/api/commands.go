package api

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"loadwatch/internal/ingest"
	"loadwatch/internal/telemetry"
)

// CommandStatus is a command's state.
type CommandStatus string

// The command states.
const (
	CommandSent   CommandStatus = "sent"   // published QoS 1; the device has not answered yet (it may be asleep)
	CommandDone   CommandStatus = "done"   // the device acknowledged it with ok
	CommandFailed CommandStatus = "failed" // the device acknowledged it with an error
)

// CommandJSON is a command and its acknowledgement.
type CommandJSON struct {
	ID      string          `json:"id"`
	Device  string          `json:"device"`
	Kind    string          `json:"kind"`
	Args    json.RawMessage `json:"args,omitempty"`
	Status  CommandStatus   `json:"status"`
	Sent    time.Time       `json:"sent"`
	Acked   *time.Time      `json:"acked,omitempty"`
	Error   string          `json:"error,omitempty"`
	State   string          `json:"state,omitempty"` // the device's state after the command (relay: closed, open...)
	changed chan struct{}
}

// Commands sends commands to devices over MQTT and matches their acks. It
// remembers the last Keep commands. It implements ingest.Notifier (acks).
type Commands struct {
	pub  Publisher
	now  func() time.Time
	keep int

	mu    sync.Mutex
	byID  map[string]*CommandJSON
	order []string
}

// NewCommands returns a command tracker that publishes with pub.
func NewCommands(pub Publisher, now func() time.Time) *Commands {
	if now == nil {
		now = time.Now
	}
	return &Commands{pub: pub, now: now, keep: 10000, byID: map[string]*CommandJSON{}}
}

// ErrBadCommand wraps a command the wire contract refuses.
var ErrBadCommand = errors.New("bad command")

// Send validates and publishes a command to device (QoS 1, so a sleeping
// device with a persistent session gets it on its next wake).
func (c *Commands) Send(device string, kind telemetry.CommandKind, args json.RawMessage) (CommandJSON, error) {
	if err := telemetry.ValidateDeviceID(device); err != nil {
		return CommandJSON{}, errors.Join(ErrBadCommand, err)
	}
	var idb [9]byte
	rand.Read(idb[:])
	cmd := telemetry.Command{ID: base64.RawURLEncoding.EncodeToString(idb[:]), Kind: kind, Args: args}
	payload := cmd.AppendJSON(nil)
	if _, err := telemetry.DecodeCommand(payload, telemetry.Limits{}); err != nil {
		return CommandJSON{}, errors.Join(ErrBadCommand, err)
	}
	cj := &CommandJSON{ID: cmd.ID, Device: device, Kind: string(kind), Args: args, Status: CommandSent, Sent: c.now().UTC(), changed: make(chan struct{})}
	c.mu.Lock()
	c.byID[cj.ID] = cj
	c.order = append(c.order, cj.ID)
	if len(c.order) > c.keep {
		delete(c.byID, c.order[0])
		c.order = c.order[1:]
	}
	c.mu.Unlock()
	if err := c.pub.Publish(telemetry.Topic(device, telemetry.ChannelCmd), payload, false, 1); err != nil {
		c.mu.Lock()
		delete(c.byID, cj.ID)
		c.mu.Unlock()
		return CommandJSON{}, err
	}
	out, _ := c.Get(cj.ID)
	return out, nil
}

// Get returns a command by id.
func (c *Commands) Get(id string) (CommandJSON, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cj, ok := c.byID[id]
	if !ok {
		return CommandJSON{}, false
	}
	return *cj, true
}

// Wait waits until the command is acknowledged or d passed or done is
// closed, and returns its state.
func (c *Commands) Wait(id string, d time.Duration, done <-chan struct{}) (CommandJSON, bool) {
	c.mu.Lock()
	cj, ok := c.byID[id]
	var ch chan struct{}
	if ok {
		ch = cj.changed
	}
	c.mu.Unlock()
	if !ok {
		return CommandJSON{}, false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-done:
	}
	return c.Get(id)
}

// Notify implements ingest.Notifier: it records acks.
func (c *Commands) Notify(e ingest.Event) {
	if e.Type != ingest.EventAck || e.Ack == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cj, ok := c.byID[e.Ack.ID]
	if !ok || cj.Device != e.Device || cj.Status != CommandSent {
		return
	}
	t := e.Time.UTC()
	cj.Acked, cj.Error, cj.State = &t, e.Ack.Error, e.Ack.State
	cj.Status = CommandDone
	if !e.Ack.OK {
		cj.Status = CommandFailed
	}
	close(cj.changed)
}

type commandRequest struct {
	Kind string          `json:"kind"`
	Args json.RawMessage `json:"args,omitempty"`
}

// MaxCommandWait bounds ?wait= of a command request.
const MaxCommandWait = 60 * time.Second

// command serves POST /api/v1/devices/{id}/commands with a body
// {"kind": ..., "args": {...}}. With ?wait=DURATION it waits (at most
// MaxCommandWait) for the acknowledgement: 200 when acknowledged, 202
// when still pending; without it, 202 at once.
func (a *API) command(w http.ResponseWriter, r *http.Request) {
	var wait time.Duration
	if s := r.URL.Query().Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			writeError(w, http.StatusBadRequest, "wait must be a duration such as 5s")
			return
		}
		wait = min(d, MaxCommandWait)
	}
	var req commandRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body must be {\"kind\": ..., \"args\": {...}}: "+err.Error())
		return
	}
	cj, err := a.cfg.Commands.Send(r.PathValue("id"), telemetry.CommandKind(req.Kind), req.Args)
	switch {
	case errors.Is(err, ErrBadCommand):
		writeError(w, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		a.cfg.Log.Warn("api: command not sent", "device", r.PathValue("id"), "error", err)
		writeError(w, http.StatusServiceUnavailable, "command not sent: "+err.Error())
		return
	}
	if wait > 0 {
		cj, _ = a.cfg.Commands.Wait(cj.ID, wait, r.Context().Done())
	}
	code := http.StatusAccepted
	if cj.Status != CommandSent {
		code = http.StatusOK
	}
	w.Header().Set("Location", "/api/v1/commands/"+cj.ID)
	writeJSON(w, code, cj)
}

func (a *API) commandStatus(w http.ResponseWriter, r *http.Request) {
	cj, ok := a.cfg.Commands.Get(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, "no such command (the server remembers the last 10000)")
		return
	}
	writeJSON(w, http.StatusOK, cj)
}
