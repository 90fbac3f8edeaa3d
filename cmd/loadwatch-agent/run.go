package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"loadwatch/internal/agent"
	"loadwatch/internal/buildinfo"
	"loadwatch/internal/dutycycle"
	"loadwatch/internal/loadsim"
	"loadwatch/internal/mqttc"
	"loadwatch/internal/mqttc/agentmqtt"
	"loadwatch/internal/ota/otaagent"
	"loadwatch/internal/outbox"
	"loadwatch/internal/power"
	"loadwatch/internal/pzem"
	"loadwatch/internal/pzem/pzemagent"
	"loadwatch/internal/pzem/pzemtest"
	"loadwatch/internal/relay"
	"loadwatch/internal/safety"
	"loadwatch/internal/serialport"
)

// runCmd is `loadwatch-agent run`. Every flag can also come from the YAML
// file given with --config (same names, e.g. "max-power: 2000") and from
// the environment (LOADWATCH_<FLAG>); a value given on the command line or
// in the environment wins over the file, the file over the defaults.
type runCmd struct {
	Config string `short:"c" env:"LOADWATCH_CONFIG" help:"YAML config file (keys are the flag names)." yaml:"-"`

	Port      string        `env:"LOADWATCH_PORT" help:"Serial port of the meter bus (e.g. /dev/ttyUSB0)." xor:"source" yaml:"port"`
	Sim       bool          `env:"LOADWATCH_SIM" help:"Use in-process virtual meters over simulated circuits instead of a serial port." xor:"source" yaml:"sim"`
	Addr      []int         `env:"LOADWATCH_ADDR" help:"Meter address(es) on the bus, comma separated [1]. One meter reports as device <id>, several as <id>.<addr>." yaml:"addr"`
	Broker    string        `env:"LOADWATCH_BROKER" help:"MQTT broker URL: mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS (required)." yaml:"broker"`
	Device    string        `env:"LOADWATCH_DEVICE" help:"Agent id: MQTT client id and username (required)." yaml:"device"`
	Password  string        `env:"LOADWATCH_PASSWORD" help:"MQTT password (the device token); prefer the env var or the config file." yaml:"password"`
	CA        string        `name:"ca" env:"LOADWATCH_CA" help:"PEM file of the CA that signed the broker's certificate (mqtts)." yaml:"ca"`
	Wake      time.Duration `env:"LOADWATCH_WAKE" help:"Wake period: one quick check of every meter per period [5s]." yaml:"wake"`
	Threshold string        `env:"LOADWATCH_THRESHOLD" help:"Change that wakes fully and reports: '1W', or '1W,0.5%' for max(1 W, 0.5 % of P) [1W,0.5%]." yaml:"threshold"`
	Heartbeat int           `env:"LOADWATCH_HEARTBEAT" help:"Report at least every this many wakes [60]." yaml:"heartbeat"`
	AlwaysOn  bool          `name:"always-on" env:"LOADWATCH_ALWAYS_ON" help:"Keep the MQTT connection open between reports (default: radio off between reports)." yaml:"always-on"`
	Outbox    string        `env:"LOADWATCH_OUTBOX" help:"Outbox directory (durable queue, seq and ledger state) [/var/lib/loadwatch-agent/outbox]." yaml:"outbox"`
	OutboxMax int64         `name:"outbox-max-bytes" help:"Bound of each outbox; when full the oldest readings are dropped and counted [64 MiB]." yaml:"outbox-max-bytes"`

	MaxPower    float64       `name:"max-power" help:"Trip the relay above this power, W (0: off)." yaml:"max-power"`
	MaxCurrent  float64       `name:"max-current" help:"Trip above this current, A (0: off)." yaml:"max-current"`
	MaxVoltage  float64       `name:"max-voltage" help:"Trip above this voltage, V (0: off)." yaml:"max-voltage"`
	MinVoltage  float64       `name:"min-voltage" help:"Trip below this voltage, V (0: off)." yaml:"min-voltage"`
	TripOnAlarm bool          `name:"trip-on-alarm" help:"Trip when the meter raises its power alarm flag." yaml:"trip-on-alarm"`
	Hold        time.Duration `help:"A limit must be exceeded this long before the relay opens [0: first reading]." yaml:"hold"`
	Recovery    time.Duration `help:"Close again this long after a trip once within limits (0: latch until relay_reset)." yaml:"recovery"`
	Retries     int           `help:"Automatic recoveries before a trip latches." yaml:"retries"`
	SafetyEvery time.Duration `name:"safety-every" help:"Read a meter that has a relay and limits this often for the safety check alone [1s]." yaml:"safety-every"`

	RelayChip      string `name:"relay-chip" help:"GPIO chip of the relay line [gpiochip0]." yaml:"relay-chip"`
	RelayLine      []int  `name:"relay-line" help:"GPIO line of each meter's relay, in --addr order (-1: none)." yaml:"relay-line"`
	RelayActiveLow bool   `name:"relay-active-low" help:"The relay module closes on a low level." yaml:"relay-active-low"`

	SimSchedule string `name:"sim-schedule" help:"With --sim: appliance schedule (loadsim syntax) or 'reference' [reference]." yaml:"sim-schedule"`
	SimSeed     int64  `name:"sim-seed" help:"With --sim: seed of the circuits [1]." yaml:"sim-seed"`

	Linger         time.Duration `help:"Duty-cycled: keep the connection this long after sending, for queued commands [1s]." yaml:"linger"`
	SessionExpiry  time.Duration `name:"session-expiry" help:"How long the broker keeps the session while the agent sleeps [24h]." yaml:"session-expiry"`
	PublishTimeout time.Duration `name:"publish-timeout" help:"Give up on a PUBACK after this long and retry [10s]." yaml:"publish-timeout"`
	RetryDelay     time.Duration `name:"retry-delay" help:"Wait after a failed connection or publish [5s]." yaml:"retry-delay"`
	LogLevel       string        `name:"log-level" help:"debug, info, warn or error [info]." yaml:"log-level"`
	OTACommand     string        `name:"ota-command" help:"Alternative to --ota-server: command run for check_ota, e.g. 'systemctl start --no-block loadwatch-agent-update.service' (neither: check_ota is refused)." yaml:"ota-command"`

	OTAServer         string        `name:"ota-server" env:"LOADWATCH_OTA_SERVER" help:"loadwatch server base URL (https://host:port) for over-the-air updates, checked in-process on the heartbeat and on check_ota; a new version must pass its health check or is rolled back." yaml:"ota-server"`
	OTAKey            []string      `name:"ota-key" env:"LOADWATCH_OTA_KEY" help:"Pinned minisign public key file(s) releases must be signed with [/etc/loadwatch-agent/ota.pub]." yaml:"ota-key"`
	OTAChannel        string        `name:"ota-channel" env:"LOADWATCH_OTA_CHANNEL" help:"Release channel this device follows [stable]." yaml:"ota-channel"`
	OTAToken          string        `name:"ota-token" env:"LOADWATCH_OTA_TOKEN" help:"This device's OTA bearer token [--password]." yaml:"ota-token"`
	OTAState          string        `name:"ota-state" env:"LOADWATCH_OTA_STATE" help:"OTA state directory (state.json, staging/) [/var/lib/loadwatch-agent/ota]." yaml:"ota-state"`
	OTABinary         string        `name:"ota-binary" help:"Installed binary OTA replaces and restarts [this executable]." yaml:"ota-binary"`
	OTAHealthDeadline time.Duration `name:"ota-health-deadline" help:"A new version must read its meters and connect to the broker within this long after an update, or the previous binary is restored [2m]." yaml:"ota-health-deadline"`

	// test hooks
	onStart func(a *agent.Agent, sim *simBus)
}

// simBus is what --sim builds: circuits, meters and relays.
type simBus struct {
	Circuits []*loadsim.Circuit
	Relays   []*relay.Sim
	Bus      *pzemtest.Bus
}

// mergeFile fills the zero fields of c from the YAML file.
func (c *runCmd) mergeFile() error {
	if c.Config == "" {
		return nil
	}
	b, err := os.ReadFile(c.Config)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var f runCmd
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", c.Config, err)
	}
	dst, src := reflect.ValueOf(c).Elem(), reflect.ValueOf(&f).Elem()
	for i := range dst.NumField() {
		if !dst.Type().Field(i).IsExported() {
			continue
		}
		if dst.Field(i).IsZero() && !src.Field(i).IsZero() {
			dst.Field(i).Set(src.Field(i))
		}
	}
	return nil
}

// parseThreshold reads "1W", "1", "1W,0.5%" or "0.5%".
func parseThreshold(s string) (w power.Watts, pct float64, err error) {
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		switch {
		case part == "":
		case strings.HasSuffix(part, "%"):
			pct, err = strconv.ParseFloat(strings.TrimSuffix(part, "%"), 64)
			if err != nil || !(pct >= 0 && pct <= 100) {
				return 0, 0, fmt.Errorf("--threshold %q: bad percentage", s)
			}
			if pct == 0 {
				pct = -1
			}
		default:
			v, perr := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSuffix(part, "W"), "w"), 64)
			if perr != nil || !(v > 0 && v <= 25000) {
				return 0, 0, fmt.Errorf("--threshold %q: want watts such as 1W", s)
			}
			w = power.Watts(v)
		}
	}
	return w, pct, nil
}

// Run runs the agent. With --ota-server it first lets a version on trial
// prove itself (Boot, while the loop runs), and after an installed update
// or a rollback it stops the loop cleanly and execs the installed binary
// (same pid: the supervisor keeps tracking it).
func (c *runCmd) Run(ctx context.Context) error {
	if err := c.mergeFile(); err != nil {
		return err
	}
	level := slog.LevelInfo
	if c.LogLevel != "" {
		if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
			return fmt.Errorf("run: --log-level: %w", err)
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	up, err := c.otaRun(log)
	if err != nil {
		return err
	}
	started, err := c.run(ctx, log, up)
	if up == nil {
		return err
	}
	if !started && err != nil && up.bootFailed(ctx, err) {
		log.Error("run: this version cannot start after an update; restarting the previous binary", "err", err)
		return otaagent.Exec(up.binary, os.Args[1:])
	}
	if why := up.execPending(); why != "" && ctx.Err() == nil {
		log.Info("run: restarting into the installed binary", "why", why, "binary", up.binary)
		return otaagent.Exec(up.binary, os.Args[1:])
	}
	return err
}

// otaRun makes the in-process updater when --ota-server is given.
func (c *runCmd) otaRun(log *slog.Logger) (*otaRun, error) {
	if c.OTAServer == "" {
		return nil, nil
	}
	if c.OTACommand != "" {
		return nil, errors.New("run: give --ota-server or --ota-command, not both")
	}
	keys := c.OTAKey
	if len(keys) == 0 {
		keys = []string{"/etc/loadwatch-agent/ota.pub"}
	}
	token := c.OTAToken
	if token == "" {
		token = c.Password
	}
	up, err := newOTARun(otaSettings{Server: c.OTAServer, Keys: keys, Channel: c.OTAChannel, Token: token,
		State: c.OTAState, Binary: c.OTABinary, HealthDeadline: c.OTAHealthDeadline}, log)
	if err != nil {
		return nil, fmt.Errorf("run: ota: %w", err)
	}
	return up, nil
}

// run sets the agent up and runs it; started says whether the loop ran.
func (c *runCmd) run(ctx context.Context, log *slog.Logger, up *otaRun) (started bool, err error) {
	if c.Broker == "" || c.Device == "" {
		return false, errors.New("run: --broker and --device are required (flags, env or config file)")
	}
	if (c.Port == "") == !c.Sim {
		return false, errors.New("run: give exactly one of --port DEV and --sim")
	}
	addrs := c.Addr
	if len(addrs) == 0 {
		addrs = []int{1}
	}
	for _, a := range addrs {
		if err := pzem.CheckAddress(a); err != nil {
			return false, fmt.Errorf("run: --addr: %w", err)
		}
	}
	changeW, changePct, err := parseThreshold(c.Threshold)
	if err != nil {
		return false, err
	}
	outDir := c.Outbox
	if outDir == "" {
		outDir = "/var/lib/loadwatch-agent/outbox"
	}
	mq := mqttc.Config{Broker: c.Broker, ClientID: c.Device, Password: c.Password, CAFile: c.CA, SessionExpiry: c.SessionExpiry}
	if otaTestFault == "broker" {
		mq.Password += "-test-fault"
	}
	if err := mq.Validate(); err != nil {
		return false, fmt.Errorf("run: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	meters := make([]agent.Meter, len(addrs))
	var sensor agent.Sensor
	var sim *simBus
	if c.Sim {
		sim, sensor, err = c.startSim(ctx, addrs)
		if err != nil {
			return false, err
		}
		for i := range meters {
			meters[i].Relay = sim.Relays[i]
		}
	} else {
		p, err := serialport.Open(c.Port)
		if err != nil {
			return false, fmt.Errorf("run: %w", err)
		}
		defer p.Close()
		d, err := pzem.New(p, nil)
		if err != nil {
			return false, fmt.Errorf("run: %w", err)
		}
		sensor = pzemagent.Sensor{Dev: d} // the driver with its link counters
		for i, line := range c.RelayLine {
			if i >= len(meters) {
				return false, errors.New("run: more --relay-line values than meters")
			}
			if line < 0 {
				continue
			}
			g, err := relay.OpenGPIO(relay.GPIOOpts{Chip: c.RelayChip, Line: line, ActiveLow: c.RelayActiveLow, Closed: true})
			if err != nil {
				return false, fmt.Errorf("run: %w", err)
			}
			defer g.Close()
			meters[i].Relay = g
		}
	}
	for i, a := range addrs {
		meters[i].Addr = uint8(a)
	}
	cfg := agent.Config{
		ID: c.Device, Meters: meters, Sensor: sensor, Dialer: agentmqtt.Dialer{Base: mq},
		OutboxDir: outDir, Outbox: outbox.Options{MaxBytes: c.OutboxMax},
		Duty: dutycycle.Config{Wake: c.Wake, ChangeW: changeW, ChangePct: changePct, Heartbeat: c.Heartbeat, AlwaysOn: c.AlwaysOn},
		Safety: safety.Config{MaxPower: power.Watts(c.MaxPower), MaxCurrent: power.Amperes(c.MaxCurrent),
			MaxVoltage: power.Volts(c.MaxVoltage), MinVoltage: power.Volts(c.MinVoltage), TripOnAlarm: c.TripOnAlarm,
			Hold: c.Hold, Recovery: c.Recovery, MaxRetries: c.Retries},
		SafetyPeriod: c.SafetyEvery, Firmware: buildinfo.Get("loadwatch-agent").Version,
		Linger: c.Linger, PublishTimeout: c.PublishTimeout, RetryDelay: c.RetryDelay,
		ClockSynced: agent.ClockCheck(buildDate()), Logger: log,
	}
	if otaTestFault == "meter" {
		cfg.Sensor = faultySensor{}
	}
	if c.OTACommand != "" {
		cfg.OTA = otaCommand(c.OTACommand)
	}
	if up != nil {
		cfg.OTA, cfg.Dialer, up.stop = up, up.dialer(cfg.Dialer), cancel
	}
	a, err := agent.New(cfg)
	if err != nil {
		return false, fmt.Errorf("run: %w", err)
	}
	log.Info("loadwatch-agent running", "devices", a.Devices(), "broker", c.Broker, "outbox", outDir, "sim", c.Sim, "always_on", c.AlwaysOn)
	if c.onStart != nil {
		c.onStart(a, sim)
	}
	if up != nil {
		go up.boot(ctx, a.Stats)
	}
	err = a.Run(ctx)
	log.Info("loadwatch-agent stopped", "stats", fmt.Sprintf("%+v", a.Stats()))
	if up != nil && up.execPending() != "" && errors.Is(err, context.Canceled) {
		err = nil
	}
	return true, err
}

// buildDate is the link-time build date, or zero (then ClockCheck uses its
// own floor).
func buildDate() time.Time {
	t, err := time.Parse(time.RFC3339, buildinfo.Get("loadwatch-agent").Date)
	if err != nil {
		return time.Time{}
	}
	return t
}

func (c *runCmd) startSim(ctx context.Context, addrs []int) (*simBus, agent.Sensor, error) {
	sched := loadsim.ReferenceSchedule()
	if s := strings.TrimSpace(c.SimSchedule); s != "" && s != "reference" {
		var err error
		if sched, err = loadsim.ParseSchedule(s); err != nil {
			return nil, nil, fmt.Errorf("run: --sim-schedule: %w", err)
		}
	}
	seed := c.SimSeed
	if seed == 0 {
		seed = 1
	}
	start := time.Now()
	sb := &simBus{}
	var ms []*pzemtest.Meter
	for i, a := range addrs {
		circ := loadsim.NewCircuit(loadsim.Config{Seed: seed + int64(i), Start: start, Schedule: sched})
		m, err := pzemtest.NewMeter(pzemtest.MeterOpts{Addr: uint8(a), Source: circ}, start)
		if err != nil {
			return nil, nil, err
		}
		ms = append(ms, m)
		sb.Circuits = append(sb.Circuits, circ)
		sb.Relays = append(sb.Relays, relay.NewSim(true, nil, circ.SetRelay))
	}
	bus, err := pzemtest.NewBus(pzemtest.BusOpts{Seed: uint64(seed)}, ms...)
	if err != nil {
		return nil, nil, err
	}
	sb.Bus = bus
	cli, srv := pzemtest.Pipe()
	go func() {
		bus.Serve(ctx, srv)
		cli.Close()
	}()
	d, err := pzem.New(cli, nil)
	if err != nil {
		return nil, nil, err
	}
	return sb, pzemagent.Sensor{Dev: d}, nil
}

// otaCommand runs a command line for check_ota (the update itself runs in
// its own service so that it can restart the agent).
type otaCommand string

func (o otaCommand) CheckNow(ctx context.Context) (string, error) {
	f := strings.Fields(string(o))
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, f[0], f[1:]...).CombinedOutput()
	s := strings.TrimSpace(string(out))
	if len(s) > 64 {
		s = s[len(s)-64:]
	}
	if err != nil {
		return s, fmt.Errorf("%s: %w", filepath.Base(f[0]), err)
	}
	return s, nil
}
