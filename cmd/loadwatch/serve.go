package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"loadwatch/internal/gctune"
	"loadwatch/internal/server"
	"loadwatch/internal/server/wiring"

	"github.com/alecthomas/kong"
)

// serveCmd runs the server: embedded broker (or an external one), ingest,
// store and HTTP API.
type serveCmd struct {
	Config       serveConfigFile `name:"config" type:"existingfile" env:"LOADWATCH_CONFIG" help:"JSON file of flag values, keys as the flag names with _ for - (e.g. {\"http\": \"0.0.0.0:8080\", \"device_rate\": 5}); flags given on the command line win."`
	HTTP         string          `name:"http" default:"127.0.0.1:8080" env:"LOADWATCH_HTTP" help:"HTTP listen address (API, /metrics, dashboard); 'off' disables it."`
	MQTT         string          `name:"mqtt" default:"127.0.0.1:1883" env:"LOADWATCH_MQTT" help:"Embedded MQTT broker TCP listen address; 'off' disables it."`
	Data         string          `name:"data" default:"loadwatch-data" type:"path" env:"LOADWATCH_DATA" help:"Data directory: registry, store, broker sessions, model, credentials."`
	MQTTTLS      string          `name:"mqtt-tls" env:"LOADWATCH_MQTT_TLS" help:"Embedded broker TLS listen address (needs --tls-cert and --tls-key)."`
	MQTTWS       string          `name:"mqtt-ws" env:"LOADWATCH_MQTT_WS" help:"Embedded broker MQTT-over-WebSocket listen address."`
	MQTTQueue    int32           `name:"mqtt-client-queue" default:"1024" env:"LOADWATCH_MQTT_CLIENT_QUEUE" help:"Embedded broker: most messages queued for writing per connected client. The queue takes memory only for the messages waiting in it (loadwatch's patched mochi, docs/BROKER.md). A subscriber that sets MQTT v5 Receive Maximum is never affected (what exceeds it waits in its session); one that does not, stops reading and falls this far behind loses the rest (counted in loadwatch_mqtt_dropped_messages_total with cause queue)."`
	TLSCert      string          `name:"tls-cert" type:"existingfile" env:"LOADWATCH_TLS_CERT" help:"PEM certificate: serves HTTPS and the MQTT TLS listener."`
	TLSKey       string          `name:"tls-key" type:"existingfile" env:"LOADWATCH_TLS_KEY" help:"PEM private key of --tls-cert."`
	Broker       string          `name:"broker" env:"LOADWATCH_BROKER" help:"External MQTT v5 broker (mqtt://host:1883 or mqtts://...) instead of the embedded one; replicas share its load."`
	BrokerUser   string          `name:"broker-user" env:"LOADWATCH_BROKER_USER" help:"User name at the external broker."`
	BrokerPass   string          `name:"broker-password" env:"LOADWATCH_BROKER_PASSWORD" help:"Password at the external broker (prefer the environment variable)."`
	BrokerCA     string          `name:"broker-ca" type:"existingfile" env:"LOADWATCH_BROKER_CA" help:"PEM CA bundle to verify an mqtts:// broker."`
	BrokerClient string          `name:"broker-client-id" env:"LOADWATCH_BROKER_CLIENT_ID" help:"Client id at the external broker: stable per replica, unique among replicas (default loadwatch-<hostname>)."`
	BrokerGroup  string          `name:"broker-group" default:"loadwatch" env:"LOADWATCH_BROKER_GROUP" help:"Shared subscription group of the replicas."`
	Model        string          `name:"model" type:"path" env:"LOADWATCH_MODEL" help:"Classifier model file (watched, reloaded on change); default DATA/model.json, trained from synthetic data at first start."`
	NoModel      bool            `name:"no-model" help:"Do not classify."`
	Retention    time.Duration   `name:"retention" default:"360h" env:"LOADWATCH_RETENTION" help:"How long the store keeps data."`
	MaxBytes     int64           `name:"max-bytes" env:"LOADWATCH_MAX_BYTES" help:"Store size limit in bytes (0: none)."`
	RemoteWrite  string          `name:"remote-write" env:"LOADWATCH_REMOTE_WRITE" help:"Prometheus remote_write URL that also receives every stored sample."`
	DeviceRate   float64         `name:"device-rate" env:"LOADWATCH_DEVICE_RATE" help:"Messages per second a device may send before it gets 0x97 quota exceeded (0: no limit)."`
	AuthRead     bool            `name:"auth-read" env:"LOADWATCH_AUTH_READ" help:"Require an API token for reads too, and a sign-in on the dashboard (writes always need one)."`
	LogLevel     slog.Level      `name:"log-level" default:"info" env:"LOADWATCH_LOG_LEVEL" help:"Log level: debug, info, warn, error."`
	runtimeFlags
	integrationFlags
}

// runtimeFlags tune the Go runtime of the server process (see
// docs/PERFORMANCE.md, "Tail latency and memory tuning").
type runtimeFlags struct {
	GOGC        int    `name:"gogc" default:"0" env:"LOADWATCH_GOGC" help:"Go GC target percent (debug.SetGCPercent), e.g. 400 to collect less often at the cost of a bigger heap; -1 disables the proportional trigger (then set --memory-limit). 0 (default) keeps the GOGC environment variable or Go's 100."`
	MemoryLimit string `name:"memory-limit" default:"auto" env:"LOADWATCH_MEMORY_LIMIT" placeholder:"SIZE" help:"Soft limit of the Go runtime's memory (debug.SetMemoryLimit), e.g. 1536MiB, 2GiB or bytes; near it the GC runs more often instead of letting the heap grow. 'auto' (default): 90 % of the smaller of the container's (cgroup) limit and the machine's memory, so that bursts such as a block compaction collect harder instead of running out of memory; not applied when GOMEMLIMIT is set. 'off' or 0: none. Keep it well above what stays live (about 45 KB per connected device with classification, plus the store's head; docs/SERVER.md, Sizing memory)."`
	GCTune      bool   `name:"gc-tune" default:"true" negatable:"" env:"LOADWATCH_GC_TUNE" help:"Keep the GC's headroom proportional to the live heap alone: after each collection lower the GC percent so that the goroutine stacks Go counts since 1.18 (two per MQTT connection) do not add to it, never below a 64 MiB headroom nor above --gogc (docs/SERVER.md, Sizing memory). --no-gc-tune leaves Go's pacer as it is."`
	PProf       string `name:"pprof" env:"LOADWATCH_PPROF" placeholder:"ADDR" help:"Debug: serve net/http/pprof on this address (e.g. 127.0.0.1:6060); off by default. Never expose it: it has no authentication."`
}

// applyRuntime sets the GC tuning and starts the pprof listener, which stops
// with ctx.
func (f *runtimeFlags) applyRuntime(ctx context.Context, log io.Writer) error {
	if f.GOGC != 0 {
		debug.SetGCPercent(f.GOGC)
	}
	if strings.EqualFold(strings.TrimSpace(f.MemoryLimit), "auto") {
		if os.Getenv("GOMEMLIMIT") == "" {
			limit, from, err := gctune.AutoLimit(os.DirFS("/"))
			if err != nil {
				fmt.Fprintf(log, "loadwatch: no automatic memory limit: %v\n", err)
			} else {
				debug.SetMemoryLimit(limit)
				fmt.Fprintf(log, "loadwatch: Go memory limit %d MiB (%.0f %% of %s; --memory-limit)\n", limit>>20, 100*gctune.AutoRatio, from)
			}
		}
	} else {
		limit, err := parseSize(f.MemoryLimit)
		if err != nil {
			return fmt.Errorf("--memory-limit: %w", err)
		}
		if limit > 0 {
			debug.SetMemoryLimit(limit)
		}
	}
	if f.GCTune {
		go (&gctune.Governor{}).Run(ctx) //nolint:errcheck // returns nil
	}
	if f.PProf == "" {
		return nil
	}
	l, err := net.Listen("tcp", f.PProf)
	if err != nil {
		return fmt.Errorf("--pprof: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		hs.Close()
	}()
	go hs.Serve(l) //nolint:errcheck // ends with ErrServerClosed at shutdown
	fmt.Fprintf(log, "loadwatch: pprof on http://%s/debug/pprof/ (debug only)\n", l.Addr())
	return nil
}

// parseSize reads a byte count with an optional binary suffix (KiB, MiB,
// GiB, TiB); "" and "off" are 0.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "off") {
		return 0, nil
	}
	mult := int64(1)
	for i, suf := range []string{"KiB", "MiB", "GiB", "TiB"} {
		if n, ok := strings.CutSuffix(s, suf); ok {
			s, mult = strings.TrimSpace(n), int64(1)<<(10*(i+1))
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a non-negative number of bytes with an optional KiB, MiB, GiB or TiB suffix", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n * mult, nil
}

// integrationFlags are the parts around the core server that serve and
// demo share (internal/server/wiring).
type integrationFlags struct {
	Tariff          string `name:"tariff" env:"LOADWATCH_TARIFF" placeholder:"TEXT" help:"Energy price on the dashboard: 'DEFAULT [CURRENCY] [; [DAYS] HH:MM-HH:MM PRICE]...' per kWh, e.g. '0.30 EUR; 22:00-06:00 0.18' (empty: no prices)."`
	TariffZone      string `name:"tariff-zone" env:"LOADWATCH_TARIFF_ZONE" placeholder:"ZONE" help:"Time zone of the tariff's clock, e.g. Europe/Berlin (default: the server's local zone)."`
	Alerts          string `name:"alerts" type:"existingfile" env:"LOADWATCH_ALERTS" placeholder:"FILE" help:"Alerts configuration (JSON: webhook and ntfy targets, rules; see docs/INTEGRATIONS.md); events and rule breaches are posted to its targets."`
	HASS            bool   `name:"hass" negatable:"" env:"LOADWATCH_HASS" help:"Announce every device to Home Assistant through MQTT discovery, with its states and the relay as a switch."`
	HASSPrefix      string `name:"hass-prefix" default:"homeassistant" env:"LOADWATCH_HASS_PREFIX" help:"Home Assistant's MQTT discovery prefix (with --hass)."`
	InsecureCookies bool   `name:"insecure-cookies" env:"LOADWATCH_INSECURE_COOKIES" help:"Send the dashboard's session cookie without the Secure flag, for a sign-in over plain HTTP on a LAN (browsers keep Secure cookies only over HTTPS or on localhost). Prefer --tls-cert."`
}

// apply adds the dashboard and the chosen integrations to cfg.
func (f *integrationFlags) apply(cfg *server.Config) error {
	return wiring.Apply(cfg, wiring.Options{Tariff: f.Tariff, TariffZone: f.TariffZone, InsecureCookies: f.InsecureCookies,
		AlertsFile: f.Alerts, HASS: f.HASS, HASSPrefix: f.HASSPrefix})
}

// serveConfigFile is the --config flag: a JSON file whose values fill the
// flags not given on the command line.
type serveConfigFile string

// BeforeResolve adds the file as a kong resolver.
func (f serveConfigFile) BeforeResolve(_ *kong.Kong, ctx *kong.Context, trace *kong.Path) error {
	path := string(ctx.FlagValue(trace.Flag).(serveConfigFile))
	if path == "" {
		return nil
	}
	fh, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("serve --config: %w", err)
	}
	defer fh.Close()
	r, err := kong.JSON(fh)
	if err != nil {
		return fmt.Errorf("serve --config %s: %w", path, err)
	}
	ctx.AddResolver(r)
	return nil
}

func (c *serveCmd) config() server.Config {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: c.LogLevel}))
	return server.Config{
		DataDir: c.Data, HTTPAddr: c.HTTP, MQTTAddr: c.MQTT, MQTTTLSAddr: c.MQTTTLS, MQTTWSAddr: c.MQTTWS, MQTTClientQueue: c.MQTTQueue,
		TLSCert: c.TLSCert, TLSKey: c.TLSKey,
		ExternalBroker: c.Broker, BrokerUser: c.BrokerUser, BrokerPassword: c.BrokerPass, BrokerCAFile: c.BrokerCA,
		BrokerClientID: c.BrokerClient, BrokerGroup: c.BrokerGroup,
		ModelFile: c.Model, NoModel: c.NoModel, Retention: c.Retention, MaxBytes: c.MaxBytes, RemoteWriteURL: c.RemoteWrite,
		DeviceRate: c.DeviceRate, AuthRead: c.AuthRead, Logger: log, Out: os.Stderr,
	}
}

func (c *serveCmd) Run(ctx context.Context) error {
	if err := c.runtimeFlags.applyRuntime(ctx, os.Stderr); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	cfg := c.config()
	if err := c.apply(&cfg); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	s, err := server.New(cfg)
	if err != nil {
		return err
	}
	go func() {
		select {
		case <-s.Ready():
			scheme := "http"
			if c.TLSCert != "" {
				scheme = "https"
			}
			if a := s.HTTPAddr(); a != "" {
				fmt.Fprintf(os.Stderr, "loadwatch: serving %s://%s/ (API token in %s)\n", scheme, a, s.APITokenFile())
			}
			if a := s.MQTTAddr(); a != "" {
				fmt.Fprintf(os.Stderr, "loadwatch: MQTT broker on %s (admin credential in %s)\n", a, s.AdminCredentialFile())
			}
		case <-ctx.Done():
		}
	}()
	return s.Run(ctx)
}
