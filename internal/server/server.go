// Package server assembles a loadwatch server from its parts: registry,
// store, classifier model, ingest pipeline, the embedded MQTT broker (or an
// external broker through a shared subscription), the HTTP API and its
// metrics. `loadwatch serve`, `demo` and the benchmarks all run one:
//
//	s, err := server.New(server.Config{DataDir: dir})
//	go s.Run(ctx)
//	<-s.Ready()
//	fmt.Println(s.HTTPAddr(), s.MQTTAddr())
package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"loadwatch/internal/api"
	"loadwatch/internal/backup"
	"loadwatch/internal/broker"
	"loadwatch/internal/classify"
	"loadwatch/internal/extbroker"
	"loadwatch/internal/forest"
	"loadwatch/internal/ingest"
	"loadwatch/internal/labels"
	"loadwatch/internal/mqttc"
	"loadwatch/internal/ota/otaserver"
	"loadwatch/internal/ota/release"
	"loadwatch/internal/promapi"
	"loadwatch/internal/registry"
	"loadwatch/internal/store"
	"loadwatch/internal/telemetry"

	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Server. Zero fields mean the documented defaults.
type Config struct {
	// DataDir holds the registry, the store (tsdb/), the broker's
	// sessions, the default model, the credentials created at first start
	// and OTA releases (ota/). Required.
	DataDir string
	// HTTPAddr is the HTTP listen address [127.0.0.1:8080]; port 0 picks
	// a free port (see HTTPAddr). "off" disables HTTP.
	HTTPAddr string
	// MQTTAddr is the embedded broker's TCP listener [127.0.0.1:1883];
	// "off" disables it. Ignored with ExternalBroker.
	MQTTAddr string
	// MQTTTLSAddr and MQTTWSAddr are optional extra listeners of the
	// embedded broker (TLS needs TLSCert and TLSKey).
	MQTTTLSAddr, MQTTWSAddr string
	// MQTTClientQueue is the embedded broker's outbound queue per client
	// (broker.Config.MaxPendingWrites); 0 = the broker's default.
	MQTTClientQueue int32
	// TLSCert and TLSKey (PEM files) switch HTTP to HTTPS and serve the
	// MQTT TLS listener.
	TLSCert, TLSKey string

	// ExternalBroker (mqtt://host:port or mqtts://...) replaces the
	// embedded broker: ingest subscribes through $share/<group>/...
	ExternalBroker string
	BrokerUser     string
	BrokerPassword string
	BrokerCAFile   string
	// BrokerClientID must be stable per replica and unique among
	// replicas [loadwatch-<hostname>].
	BrokerClientID string
	BrokerGroup    string // shared subscription group ["loadwatch"]

	// ModelFile is the classifier model (JSON). Empty: the retrained model
	// the dashboard last activated (DataDir/models/ACTIVE, see
	// labels.ActiveModel) if there is one and it loads, with
	// DataDir/model.json as its rollback target; else DataDir/model.json,
	// trained from loadsim's synthetic dataset at first start if missing.
	// The file loaded at start is watched and reloaded when it changes.
	ModelFile string
	// NoModel disables classification.
	NoModel bool

	Retention      time.Duration // store retention [15 days]
	MaxBytes       int64         // store size limit [none]
	RemoteWriteURL string        // optional Prometheus remote_write receiver

	// DeviceRate limits each device's messages per second [unlimited].
	DeviceRate float64
	// AuthRead makes reads (devices, events, queries) need a token too.
	AuthRead bool
	// OnlineWindow and OfflineAfter decide a device's state [30 s, 15 min].
	OnlineWindow, OfflineAfter time.Duration

	// Dashboard serves / (optional). DashboardFunc, when set, builds it
	// instead from the running server's parts (once, before Ready).
	Dashboard     http.Handler
	DashboardFunc func(ctx context.Context, p Parts) (http.Handler, error)
	// Notifiers are told everything ingest does, besides the events bus
	// and the command tracker (e.g. the dashboard's relay tracker). Notify
	// must not block.
	Notifiers []ingest.Notifier
	// Services run from the moment the broker is up (before Ready) until
	// shutdown, where they stop with the broker, after HTTP; e.g. the Home
	// Assistant bridge and the alerts dispatcher. A service that fails
	// while the server runs shuts the server down.
	Services []Service
	// Logger [slog.Default()]; Out receives first-start notices (where
	// the credentials are) [os.Stderr].
	Logger *slog.Logger
	Out    io.Writer
	Now    func() time.Time
}

// Service is a long-lived part added to the server (see Config.Services).
type Service struct {
	Name string
	Run  func(ctx context.Context, p Parts) error
}

// Parts are the running server's pieces, for DashboardFunc and Services.
type Parts struct {
	Pipeline *ingest.Pipeline     // the device table (api.Devices) and ingest counters
	Registry *registry.Registry   //
	Store    *store.Store         //
	Bus      *ingest.Bus          // events and their live stream
	Commands *api.Commands        // commands to devices and their acks
	Query    http.Handler         // the Prometheus-compatible API (promapi)
	OTA      http.Handler         // the OTA status/operator API (nil when OTA is off)
	Holder   *classify.Holder     // the classifier model in use
	Metrics  *prometheus.Registry // /metrics
	// Publisher publishes over the server's MQTT connection (the embedded
	// broker or the external-broker client); it fails until the broker is
	// up, which it is when Services start.
	Publisher api.Publisher
	DataDir   string
	Now       func() time.Time
	Log       *slog.Logger
}

// File names inside DataDir.
const (
	StoreDir     = "tsdb"
	ModelFile    = "model.json"
	ModelsDir    = "models" // retrained models and ACTIVE (internal/labels)
	APITokenFile = "api-token.json"
	OTADir       = "ota"
)

// Server is an assembled server. Create it with New and start it with Run.
type Server struct {
	cfg Config
	log *slog.Logger

	ready chan struct{}

	mu       sync.Mutex
	httpAddr string
	mqttAddr string
	reg      *registry.Registry
	st       *store.Store
	pipe     *ingest.Pipeline
	bus      *ingest.Bus
	holder   *classify.Holder
	metrics  *prometheus.Registry
	adminCrd registry.AdminCredential
}

// New checks the configuration; Run does the work.
func New(cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("server: no data directory")
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:8080"
	}
	if cfg.MQTTAddr == "" {
		cfg.MQTTAddr = "127.0.0.1:1883"
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("server: TLS needs both a certificate and a key")
	}
	if cfg.MQTTTLSAddr != "" && cfg.TLSCert == "" {
		return nil, errors.New("server: the MQTT TLS listener needs a certificate and a key")
	}
	if cfg.ExternalBroker != "" && cfg.BrokerClientID == "" {
		h, _ := os.Hostname()
		cfg.BrokerClientID = "loadwatch-" + regexp.MustCompile(`[^A-Za-z0-9_-]`).ReplaceAllString(h, "_")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Out == nil {
		cfg.Out = os.Stderr
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Server{cfg: cfg, log: cfg.Logger, ready: make(chan struct{})}, nil
}

// Ready is closed when the server accepts MQTT and HTTP connections.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// HTTPAddr is the bound HTTP address once Ready ("" when off).
func (s *Server) HTTPAddr() string { s.mu.Lock(); defer s.mu.Unlock(); return s.httpAddr }

// MQTTAddr is the embedded broker's bound TCP address once Ready ("" with
// an external broker or when off).
func (s *Server) MQTTAddr() string { s.mu.Lock(); defer s.mu.Unlock(); return s.mqttAddr }

// Store returns the open store once Ready (nil before).
func (s *Server) Store() *store.Store { s.mu.Lock(); defer s.mu.Unlock(); return s.st }

// Registry returns the open registry once Ready.
func (s *Server) Registry() *registry.Registry { s.mu.Lock(); defer s.mu.Unlock(); return s.reg }

// Pipeline returns the ingest pipeline once Ready.
func (s *Server) Pipeline() *ingest.Pipeline { s.mu.Lock(); defer s.mu.Unlock(); return s.pipe }

// Bus returns the events bus once Ready.
func (s *Server) Bus() *ingest.Bus { s.mu.Lock(); defer s.mu.Unlock(); return s.bus }

// Metrics returns the /metrics registry once Ready (for extra collectors).
func (s *Server) Metrics() *prometheus.Registry { s.mu.Lock(); defer s.mu.Unlock(); return s.metrics }

// AdminCredentialFile is the file with the broker's admin credential.
func (s *Server) AdminCredentialFile() string {
	return filepath.Join(s.cfg.DataDir, registry.AdminFile)
}

// APITokenFile is the file with the API token created at first start.
func (s *Server) APITokenFile() string { return filepath.Join(s.cfg.DataDir, APITokenFile) }

// ReadAPIToken reads the token written at first start.
func ReadAPIToken(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, APITokenFile))
	if err != nil {
		return "", fmt.Errorf("server: api token: %w", err)
	}
	var f struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(b, &f); err != nil || f.Token == "" {
		return "", fmt.Errorf("server: api token file %s: %w", filepath.Join(dataDir, APITokenFile), errors.Join(err, registry.ErrInvalid))
	}
	return f.Token, nil
}

// Run starts every part, serves until ctx ends and then shuts down in
// order (HTTP, broker, then store and registry), so that nothing
// acknowledged is lost.
func (s *Server) Run(ctx context.Context) (err error) {
	cfg := &s.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	var closers []func() error
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			err = errors.Join(err, closers[i]())
		}
	}()

	// Store.
	var rw *store.RemoteWriter
	if cfg.RemoteWriteURL != "" {
		if rw, err = store.NewRemoteWriter(store.RemoteWriteOptions{URL: cfg.RemoteWriteURL}); err != nil {
			return fmt.Errorf("server: %w", err)
		}
	}
	st, err := store.Open(filepath.Join(cfg.DataDir, StoreDir), store.Options{Retention: cfg.Retention, MaxBytes: cfg.MaxBytes, RemoteWrite: rw})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	closers = append(closers, st.Close)

	// Registry and first-start credentials.
	pg := &purger{st: st}
	reg, err := registry.Open(ctx, registry.Path(cfg.DataDir), &registry.Options{Purger: pg})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	closers = append(closers, reg.Close)
	cred, created, err := reg.EnsureAdmin(ctx, cfg.DataDir)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if created {
		fmt.Fprintf(cfg.Out, "loadwatch: created the MQTT admin credential (user %q) in %s\n", cred.User, cred.File)
	}
	if err := s.ensureAPIToken(ctx, reg); err != nil {
		return err
	}

	// Model.
	holder := classify.NewHolder(cfg.Now)
	modelPath := cfg.ModelFile
	if !cfg.NoModel {
		if modelPath == "" {
			modelPath = filepath.Join(cfg.DataDir, ModelFile)
			if _, serr := os.Stat(modelPath); errors.Is(serr, os.ErrNotExist) {
				start := time.Now()
				m, terr := TrainDefaultModel(ctx)
				if terr != nil {
					return fmt.Errorf("server: default model: %w", terr)
				}
				if terr := WriteModel(modelPath, m); terr != nil {
					return fmt.Errorf("server: default model: %w", terr)
				}
				fmt.Fprintf(cfg.Out, "loadwatch: trained a default model on loadsim's synthetic data (%d classes) in %v: %s\n",
					len(m.Classes), time.Since(start).Round(time.Millisecond), modelPath)
			}
			if p, ok := labels.ActiveModel(filepath.Join(cfg.DataDir, ModelsDir)); ok {
				// The default model first, so the dashboard can roll
				// back to it after a restart too.
				if err := holder.LoadFile(modelPath); err != nil {
					s.log.Warn("the default model does not load; no rollback target", "error", err)
				}
				if err := holder.LoadFile(p); err != nil {
					s.log.Warn("the model activated in the dashboard does not load; using the default model", "error", err)
				} else {
					modelPath = p
					s.log.Info("loaded the retrained model activated in the dashboard", "model", p)
				}
			}
		}
		if cur := holder.Current(); cur == nil || cur.Source != modelPath {
			if err := holder.LoadFile(modelPath); err != nil {
				return fmt.Errorf("server: model: %w", err)
			}
		}
	}

	// Ingest.
	bus := ingest.NewBus(0)
	var pub api.Publisher
	var pubReady atomic.Bool
	serverPub := publisherFunc(func(topic string, payload []byte, retain bool, qos byte) error {
		if !pubReady.Load() {
			return ErrNoBroker
		}
		return pub.Publish(topic, payload, retain, qos)
	})
	cmds := api.NewCommands(serverPub, cfg.Now)
	pipe, err := ingest.New(ingest.Config{
		Store:      st,
		Classifier: holderModel{holder},
		Notifier:   append(ingest.Notifiers{bus, cmds}, cfg.Notifiers...),
		Tasmota:    tasmotaLookup(reg),
		Now:        cfg.Now,
		DeviceRate: cfg.DeviceRate,
		Logger:     s.log,
	})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	pg.setPipeline(pipe)
	metrics := api.NewRegistry(pipe, bus, cfg.Now)
	ingDur := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "loadwatch_ingest_duration_seconds",
		Help:    "Time from a message's arrival in ingest to its stored (or refused) answer.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
	})
	metrics.MustRegister(ingDur)
	timed := timedIngester{pipe, ingDur}

	// Broker.
	runCtx, stopParts := context.WithCancel(context.WithoutCancel(ctx))
	defer stopParts()
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	goRun := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(runCtx); err != nil && runCtx.Err() == nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	var brokerReady <-chan struct{}
	var mqttAddr string
	var brk *broker.Broker
	if cfg.ExternalBroker != "" {
		xc, err := extbroker.New(extbroker.Config{URL: cfg.ExternalBroker, ClientID: cfg.BrokerClientID, Username: cfg.BrokerUser,
			Password: cfg.BrokerPassword, CAFile: cfg.BrokerCAFile, Group: cfg.BrokerGroup, Logger: s.log}, timed)
		if err != nil {
			return fmt.Errorf("server: %w", err)
		}
		pub, brokerReady = xc, xc.Ready()
		pubReady.Store(true)
		goRun("external broker", xc.Run)
	} else if cfg.MQTTAddr != "off" {
		bc := broker.Config{TCPAddr: cfg.MQTTAddr, TLSAddr: cfg.MQTTTLSAddr, WSAddr: cfg.MQTTWSAddr, DataDir: cfg.DataDir, Logger: s.log,
			MaxPendingWrites: cfg.MQTTClientQueue}
		if cfg.TLSCert != "" && (cfg.MQTTTLSAddr != "" || cfg.MQTTWSAddr != "") {
			if bc.TLS, err = broker.LoadTLS(cfg.TLSCert, cfg.TLSKey); err != nil {
				return fmt.Errorf("server: %w", err)
			}
		}
		if brk, err = broker.New(bc, reg, timed); err != nil {
			return fmt.Errorf("server: %w", err)
		}
		metrics.MustRegister(brokerCollector{brk})
		pub, brokerReady = brk, brk.Ready()
		pubReady.Store(true)
		goRun("broker", brk.Run)
	}
	goRun("registry", reg.Run)
	if rw != nil {
		goRun("remote write", rw.Run)
	}
	if !cfg.NoModel {
		goRun("model watch", func(ctx context.Context) error {
			return holder.Watch(ctx, modelPath, 5*time.Second, func(err error) { s.log.Warn("model reload failed; keeping the current model", "error", err) })
		})
	}

	// HTTP.
	var otaDev, otaAPI http.Handler
	if rel, err := release.Open(filepath.Join(cfg.DataDir, OTADir), nil); err == nil {
		h := otaserver.New(otaserver.Options{Releases: otaserver.StoreReleases{Store: rel}, Auth: reg, Logger: s.log})
		otaDev, otaAPI = h.DeviceHandler(), h.APIHandler()
	} else {
		s.log.Warn("OTA disabled", "error", err)
	}
	query := promapi.New(st, promapi.Options{Now: cfg.Now, Logger: s.log})
	parts := Parts{Pipeline: pipe, Registry: reg, Store: st, Bus: bus, Commands: cmds, Query: query,
		OTA: otaAPI, Holder: holder, Metrics: metrics, Publisher: serverPub, DataDir: cfg.DataDir, Now: cfg.Now, Log: s.log}
	dash := cfg.Dashboard
	if cfg.DashboardFunc != nil {
		dash, err = cfg.DashboardFunc(runCtx, parts)
		if err != nil {
			stopParts()
			wg.Wait()
			return fmt.Errorf("server: dashboard: %w", err)
		}
	}
	a, err := api.New(api.Config{
		Devices: pipe, Registry: reg, Tokens: reg, Bus: bus, Commands: cmds,
		Query:   query,
		Predict: holder.PredictHandler(), LegacyPredict: holder.LegacyHandler(),
		OTADevice: otaDev, OTAAPI: otaAPI, Dashboard: dash, Metrics: metrics,
		Backup:   backup.Handler(cfg.DataDir, st, reg, s.log),
		AuthRead: cfg.AuthRead, OnlineWindow: cfg.OnlineWindow, OfflineAfter: cfg.OfflineAfter,
		Now: cfg.Now, Log: s.log,
	})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	var hs *http.Server
	var httpAddr string
	if cfg.HTTPAddr != "off" {
		ln, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			stopParts()
			wg.Wait()
			return fmt.Errorf("server: http: %w", err)
		}
		httpAddr = ln.Addr().String()
		hs = &http.Server{Handler: a, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
		if cfg.TLSCert != "" {
			c, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
			if err != nil {
				ln.Close()
				stopParts()
				wg.Wait()
				return fmt.Errorf("server: https: %w", err)
			}
			hs.TLSConfig = &tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}
			ln = tls.NewListener(ln, hs.TLSConfig)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("http: %w", err)
			}
		}()
	}

	// Ready when the broker is.
	if brokerReady != nil {
		select {
		case <-brokerReady:
		case err := <-errc:
			stopParts()
			wg.Wait()
			return fmt.Errorf("server: %w", err)
		case <-ctx.Done():
		}
	}
	for _, svc := range cfg.Services {
		goRun(svc.Name, func(ctx context.Context) error { return svc.Run(ctx, parts) })
	}
	if brk != nil {
		mqttAddr = brk.Addr("tcp")
		if mqttAddr != "" {
			goRun("status watch", func(ctx context.Context) error { return s.watchStatus(ctx, mqttAddr, cred.File, pipe) })
		}
	}
	s.mu.Lock()
	s.httpAddr, s.mqttAddr = httpAddr, mqttAddr
	s.reg, s.st, s.pipe, s.bus, s.holder, s.metrics = reg, st, pipe, bus, holder, metrics
	s.adminCrd = cred
	s.mu.Unlock()
	if ctx.Err() == nil {
		close(s.ready)
		s.log.Info("loadwatch server ready", "http", httpAddr, "mqtt", mqttAddr, "broker", cfg.ExternalBroker, "data", cfg.DataDir)
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		s.log.Error("server part failed; shutting down", "error", runErr)
	}
	if hs != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		hs.Shutdown(sctx)
		cancel()
	}
	stopParts() // broker (its in-flight ingest finishes first), registry, model watch
	wg.Wait()
	return runErr
}

// watchStatus subscribes to the devices' status topics as the admin
// identity, so that ingest sees last wills (mochi publishes a will
// without calling the ingest hook). It reconnects until ctx ends.
func (s *Server) watchStatus(ctx context.Context, addr, credFile string, pipe *ingest.Pipeline) error {
	user, pass, err := registry.ReadAdminFile(credFile)
	if err != nil {
		return err
	}
	var idb [6]byte
	rand.Read(idb[:])
	for ctx.Err() == nil {
		c, err := mqttc.Dial(ctx, mqttc.Config{
			Broker: "mqtt://" + addr, ClientID: user + ":status-" + hex.EncodeToString(idb[:]), Username: user, Password: pass,
			CleanStart: true, SessionExpiry: time.Second, ConnectTimeout: 5 * time.Second,
			Subscribe: []string{telemetry.Prefix + "+/" + string(telemetry.ChannelStatus)},
			OnMessage: func(m mqttc.Message) { pipe.ObserveStatus(m.Topic, m.Payload, m.Retain) },
		})
		if err == nil {
			select {
			case <-ctx.Done():
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
				c.Close(cctx)
				cancel()
				return nil
			case <-c.Done():
			}
		} else if ctx.Err() == nil {
			s.log.Warn("status watcher cannot connect to the embedded broker; last wills are not seen", "error", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
}

// ensureAPIToken creates an admin API token at first start (when the
// registry has none) and writes it to DataDir/api-token.json (0600).
func (s *Server) ensureAPIToken(ctx context.Context, reg *registry.Registry) error {
	path := s.APITokenFile()
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	toks, err := reg.ListAPITokens(ctx)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if len(toks) > 0 {
		return nil
	}
	t, secret, err := reg.CreateAPIToken(ctx, "first-start", registry.ScopeAdmin)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	b, _ := json.MarshalIndent(map[string]any{"id": t.ID, "name": t.Name, "scopes": t.Scopes, "token": secret}, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("server: api token: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("server: api token: %w", err)
	}
	fmt.Fprintf(s.cfg.Out, "loadwatch: created an admin API token (Authorization: Bearer ...) in %s\n", path)
	return nil
}

// ErrNoBroker is returned by Parts.Publisher before the broker is up (or
// when the server runs without one).
var ErrNoBroker = errors.New("server: no MQTT broker")

type publisherFunc func(topic string, payload []byte, retain bool, qos byte) error

func (f publisherFunc) Publish(topic string, payload []byte, retain bool, qos byte) error {
	return f(topic, payload, retain, qos)
}

// holderModel adapts the model holder to ingest.Classifier.
type holderModel struct{ h *classify.Holder }

func (m holderModel) Model() *forest.Model {
	if l := m.h.Current(); l != nil {
		return l.Model
	}
	return nil
}

// purger deletes a purged device's series (all of them: the store has no
// per-time delete by device yet, so "before" is not honoured) and its
// state in ingest.
type purger struct {
	st   *store.Store
	mu   sync.Mutex
	pipe *ingest.Pipeline
}

func (p *purger) setPipeline(pipe *ingest.Pipeline) {
	p.mu.Lock()
	p.pipe = pipe
	p.mu.Unlock()
}

func (p *purger) PurgeDevice(ctx context.Context, id string, _ time.Time) error {
	p.mu.Lock()
	pipe := p.pipe
	p.mu.Unlock()
	if pipe != nil {
		pipe.Forget(id)
	}
	return p.st.DeleteSeries(ctx, fmt.Sprintf(`{%s=~%q}`, store.LabelDevice, regexp.QuoteMeta(id)+`(\.[0-9]+)?`))
}

// tasmotaLookup maps Tasmota topics through the registry, caching answers
// for a short while (the broker calls it for every message).
func tasmotaLookup(reg *registry.Registry) ingest.TasmotaLookup {
	type entry struct {
		dev string
		loc *time.Location
		err error
		at  time.Time
	}
	var mu sync.Mutex
	cache := map[string]entry{}
	return func(ctx context.Context, topic string) (string, *time.Location, error) {
		mu.Lock()
		e, ok := cache[topic]
		mu.Unlock()
		if ok && time.Since(e.at) < 30*time.Second {
			return e.dev, e.loc, e.err
		}
		d, err := reg.ByTasmotaTopic(ctx, topic)
		e = entry{at: time.Now(), err: err}
		if err == nil {
			e.dev, e.loc = d.ID, time.UTC
			if d.TimeZone != "" {
				if e.loc, err = time.LoadLocation(d.TimeZone); err != nil {
					e.err = fmt.Errorf("device %s time zone: %w", d.ID, err)
				}
			}
			if e.err == nil && !d.Revoked.IsZero() {
				e.err = registry.ErrRevoked
			}
		}
		if e.err == nil {
			if verr := telemetry.ValidateDeviceID(e.dev); verr != nil {
				e.err = verr
			}
		}
		mu.Lock()
		cache[topic] = e
		mu.Unlock()
		return e.dev, e.loc, e.err
	}
}

// timedIngester measures ingest from outside the pipeline.
type timedIngester struct {
	p *ingest.Pipeline
	h prometheus.Histogram
}

func (t timedIngester) Ingest(ctx context.Context, clientID, topic string, payload []byte) (byte, error) {
	start := time.Now()
	code, err := t.p.Ingest(ctx, clientID, topic, payload)
	t.h.Observe(time.Since(start).Seconds())
	return code, err
}
