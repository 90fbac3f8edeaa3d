// Package demo runs `loadwatch demo`: a whole loadwatch installation in one
// process with no setup. It starts the server (embedded MQTT broker,
// ingest, store, HTTP API) and four simulated, duty-cycled edge agents.
// Each agent is the real agent loop (internal/agent) with its own device
// credentials in the registry, its own disk outbox, a virtual PZEM-004T
// (internal/pzem/pzemtest, read through the real Modbus driver) measuring a
// simulated circuit (internal/loadsim) on an appliance schedule, and a
// simulated relay that the circuit's load follows.
//
// See Scenario for what the agents show and docs/DEMO.md for the timing.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"loadwatch/internal/agent"
	"loadwatch/internal/dutycycle"
	"loadwatch/internal/ingest"
	"loadwatch/internal/mqttc"
	"loadwatch/internal/mqttc/agentmqtt"
	"loadwatch/internal/pzem"
	"loadwatch/internal/pzem/pzemagent"
	"loadwatch/internal/pzem/pzemtest"
	"loadwatch/internal/registry"
	"loadwatch/internal/relay"
	"loadwatch/internal/server"
)

// Defaults of Config.
const (
	// DefaultWake is the agents' wake period: a quick meter check every
	// 2 s (the product default is 5 s), so that a change shows on the
	// dashboard a few seconds after it happens.
	DefaultWake = 2 * time.Second
	// DefaultHeartbeat: report at least every 10 wakes (20 s), well
	// inside the server's 30 s online window.
	DefaultHeartbeat = 10
)

// Config configures a Demo. Zero fields mean the documented defaults.
type Config struct {
	// DataDir holds the server's data (registry, store, model,
	// credentials) and the agents' outboxes (agents/<id>/). Required: the
	// command makes a temporary one unless --data is given.
	DataDir string
	// HTTPAddr and MQTTAddr as in server.Config [127.0.0.1:8080,
	// 127.0.0.1:1883]; port 0 picks a free port.
	HTTPAddr, MQTTAddr string
	// Agents is the scenario [Scenario()].
	Agents []Agent
	// Wake and Heartbeat configure every agent's duty cycle
	// [DefaultWake, DefaultHeartbeat].
	Wake      time.Duration
	Heartbeat int
	// Dashboard, DashboardFunc, Notifiers and Services are handed to the
	// server (server.Config), so the demo serves the same dashboard and
	// integrations as serve (cmd/loadwatch fills them through
	// internal/server/wiring).
	Dashboard     http.Handler
	DashboardFunc func(ctx context.Context, p server.Parts) (http.Handler, error)
	Notifiers     []ingest.Notifier
	Services      []server.Service
	// Logger receives the server's and the agents' logs [warnings and
	// errors to stderr]. Out receives what the demo prints: addresses,
	// credentials, agents and their events as they arrive [os.Stdout].
	Logger *slog.Logger
	Out    io.Writer
}

// Demo is a running demo. Create it with New and start it with Run.
type Demo struct {
	cfg   Config
	srv   *server.Server
	ready chan struct{}

	mu     sync.Mutex
	relays map[string]*relay.Sim
	agents map[string]*agent.Agent
}

// New checks the configuration; Run does the work.
func New(cfg Config) (*Demo, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("demo: no data directory")
	}
	if cfg.Agents == nil {
		cfg.Agents = Scenario()
	}
	seen := map[string]bool{}
	for _, a := range cfg.Agents {
		if err := registry.ValidateID(a.ID); err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		if seen[a.ID] {
			return nil, fmt.Errorf("demo: agent %s twice", a.ID)
		}
		seen[a.ID] = true
		if _, err := a.circuit(time.Now()); err != nil {
			return nil, err
		}
	}
	if cfg.Wake <= 0 {
		cfg.Wake = DefaultWake
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	srv, err := server.New(server.Config{
		DataDir: cfg.DataDir, HTTPAddr: cfg.HTTPAddr, MQTTAddr: cfg.MQTTAddr,
		Dashboard: cfg.Dashboard, DashboardFunc: cfg.DashboardFunc, Notifiers: cfg.Notifiers, Services: cfg.Services,
		Logger: cfg.Logger, Out: cfg.Out,
	})
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	return &Demo{cfg: cfg, srv: srv, ready: make(chan struct{}),
		relays: map[string]*relay.Sim{}, agents: map[string]*agent.Agent{}}, nil
}

// Ready is closed when the server is up and every agent is running.
func (d *Demo) Ready() <-chan struct{} { return d.ready }

// Server returns the demo's server (its addresses, store and registry once
// Ready).
func (d *Demo) Server() *server.Server { return d.srv }

// Relay returns the simulated relay of an agent once Ready.
func (d *Demo) Relay(id string) *relay.Sim {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.relays[id]
}

// AgentStats returns the counters of an agent once Ready.
func (d *Demo) AgentStats(id string) (agent.Stats, bool) {
	d.mu.Lock()
	a := d.agents[id]
	d.mu.Unlock()
	if a == nil {
		return agent.Stats{}, false
	}
	return a.Stats(), true
}

// AgentsDir is where the agents keep their outboxes inside DataDir.
const AgentsDir = "agents"

// Run starts the server and the agents and runs until ctx ends; then it
// stops the agents first (they disconnect cleanly and save their ledgers)
// and the server last, so that every reported reading is stored.
func (d *Demo) Run(ctx context.Context) error {
	cfg := &d.cfg
	srvCtx, stopSrv := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSrv()
	srvErr := make(chan error, 1)
	go func() { srvErr <- d.srv.Run(srvCtx) }()
	select {
	case <-d.srv.Ready():
	case err := <-srvErr:
		return fmt.Errorf("demo: %w", err)
	case <-ctx.Done():
		stopSrv()
		<-srvErr
		return nil
	}
	reg, bus := d.srv.Registry(), d.srv.Bus()

	agCtx, stopAgents := context.WithCancel(ctx)
	defer stopAgents()
	var wg sync.WaitGroup
	agErr := make(chan error, len(cfg.Agents))
	start := time.Now()
	for _, spec := range cfg.Agents {
		a, err := d.startAgent(agCtx, reg, spec, start)
		if err != nil {
			stopAgents()
			wg.Wait()
			stopSrv()
			return errors.Join(err, <-srvErr)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.Run(agCtx); err != nil && agCtx.Err() == nil {
				agErr <- fmt.Errorf("demo: agent %s: %w", spec.ID, err)
			}
		}()
	}

	// Print the demo's events as they arrive.
	sub := bus.Subscribe(256, func(e ingest.Event) bool { return e.Type == ingest.EventAnomaly })
	var pw sync.WaitGroup
	pw.Add(1)
	go func() {
		defer pw.Done()
		for e := range sub.C {
			fmt.Fprintf(cfg.Out, "%s  %-7s %-14s %s\n", e.Time.Local().Format("15:04:05"), e.Device, e.Kind, e.Detail)
		}
	}()
	d.banner()
	close(d.ready)

	var err error
	select {
	case <-ctx.Done():
	case err = <-agErr:
	case err = <-srvErr:
		err = fmt.Errorf("demo: server: %w", err)
		srvErr <- nil // for the wait below
	}
	stopAgents()
	wg.Wait()
	sub.Close()
	pw.Wait()
	stopSrv()
	return errors.Join(err, <-srvErr)
}

func (d *Demo) banner() {
	out, s := d.cfg.Out, d.srv
	fmt.Fprintf(out, "\nloadwatch demo: server, embedded broker and %d simulated agents are running.\n", len(d.cfg.Agents))
	if a := s.HTTPAddr(); a != "" {
		fmt.Fprintf(out, "  dashboard and API   http://%s/   (devices: http://%s/api/v1/devices)\n", a, a)
	}
	if a := s.MQTTAddr(); a != "" {
		fmt.Fprintf(out, "  MQTT broker         %s\n", a)
	}
	fmt.Fprintf(out, "  admin credential    %s\n", s.AdminCredentialFile())
	fmt.Fprintf(out, "  API token           %s\n", s.APITokenFile())
	fmt.Fprintf(out, "  data                %s\n", d.cfg.DataDir)
	fmt.Fprintf(out, "  agents wake every %v, report on a change and at least every %v:\n", d.cfg.Wake, time.Duration(d.cfg.Heartbeat)*d.cfg.Wake)
	for _, a := range d.cfg.Agents {
		fmt.Fprintf(out, "    %-7s %s\n", a.ID, a.About)
	}
	fmt.Fprintf(out, "Events appear below as the server receives them. Ctrl-C stops everything.\n\n")
}

// startAgent registers the agent (or gives it a new token when a kept data
// directory already has it), builds its circuit, meter and relay and
// returns the agent, ready to run.
func (d *Demo) startAgent(ctx context.Context, reg *registry.Registry, spec Agent, start time.Time) (*agent.Agent, error) {
	_, tok, err := reg.Add(ctx, registry.NewDevice{ID: spec.ID})
	if errors.Is(err, registry.ErrExists) {
		tok, err = reg.Rotate(ctx, spec.ID)
	}
	if err != nil {
		return nil, fmt.Errorf("demo: register %s: %w", spec.ID, err)
	}
	circ, err := spec.circuit(start)
	if err != nil {
		return nil, err
	}
	m, err := pzemtest.NewMeter(pzemtest.MeterOpts{Addr: 1, Source: circ}, start)
	if err != nil {
		return nil, fmt.Errorf("demo: agent %s: %w", spec.ID, err)
	}
	bus, err := pzemtest.NewBus(pzemtest.BusOpts{Seed: uint64(spec.Seed)}, m)
	if err != nil {
		return nil, fmt.Errorf("demo: agent %s: %w", spec.ID, err)
	}
	cli, srv := pzemtest.Pipe()
	go func() {
		bus.Serve(ctx, srv)
		cli.Close()
	}()
	dev, err := pzem.New(cli, nil)
	if err != nil {
		return nil, fmt.Errorf("demo: agent %s: %w", spec.ID, err)
	}
	rel := relay.NewSim(true, nil, circ.SetRelay)
	broker := d.srv.MQTTAddr()
	if broker == "" {
		return nil, errors.New("demo: the server has no MQTT listener")
	}
	a, err := agent.New(agent.Config{
		ID: spec.ID, Meters: []agent.Meter{{Addr: 1, Relay: rel}}, Sensor: pzemagent.Sensor{Dev: dev},
		Dialer:    agentmqtt.Dialer{Base: mqttc.Config{Broker: "mqtt://" + broker, ClientID: spec.ID, Password: tok}},
		OutboxDir: filepath.Join(d.cfg.DataDir, AgentsDir, spec.ID),
		Duty:      dutycycle.Config{Wake: d.cfg.Wake, Heartbeat: d.cfg.Heartbeat},
		Safety:    spec.Safety,
		Firmware:  "demo",
		// The agents run in the server's process, on its clock.
		ClockSynced: func(time.Time) bool { return true },
		// The demo's broker is local: retry quickly after a failure.
		RetryDelay: time.Second,
		Logger:     d.cfg.Logger.With("agent", spec.ID),
	})
	if err != nil {
		return nil, fmt.Errorf("demo: agent %s: %w", spec.ID, err)
	}
	d.mu.Lock()
	d.relays[spec.ID], d.agents[spec.ID] = rel, a
	d.mu.Unlock()
	return a, nil
}
