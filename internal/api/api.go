// Package api is loadwatch's HTTP API: devices, events (with a live SSE
// stream), commands to devices with their acknowledgements, the
// Prometheus-compatible query API (internal/promapi), the classifier's
// predict endpoints, OTA, the live backup, and /metrics.
//
// Write operations (commands, OTA promote/halt) need an API token with the
// right scope (Authorization: Bearer lwt_...); reads need one with scope
// read only when Config.AuthRead is set.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"loadwatch/internal/ingest"
	"loadwatch/internal/registry"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Devices is the live device table (*ingest.Pipeline implements it).
type Devices interface {
	Devices() []ingest.Device
	Device(id string) (ingest.Device, bool)
}

// Registry lists registered devices (*registry.Registry implements it).
type Registry interface {
	List(ctx context.Context) ([]registry.Device, error)
}

// TokenChecker verifies API tokens (*registry.Registry implements it).
type TokenChecker interface {
	CheckAPIToken(ctx context.Context, secret string, need registry.Scope) (registry.APIToken, error)
}

// Publisher sends a message to devices over MQTT (QoS 1), e.g. the
// embedded broker or the external-broker client.
type Publisher interface {
	Publish(topic string, payload []byte, retain bool, qos byte) error
}

// Config configures the API. Zero fields mean the documented defaults;
// a nil handler field leaves its endpoints out.
type Config struct {
	Devices  Devices      // required
	Registry Registry     // optional: registered devices not yet heard from are listed too
	Tokens   TokenChecker // required for write operations (without it they answer 503)
	Bus      *ingest.Bus  // events and their SSE stream
	// Commands delivers commands; acks reach it through Commands.Notify,
	// which the server puts among ingest's notifiers.
	Commands *Commands
	// Query serves the Prometheus-compatible API under /api/v1/ (promapi).
	Query http.Handler
	// Predict and LegacyPredict serve POST /api/v1/predict and POST /predict.
	Predict, LegacyPredict http.Handler
	// OTADevice serves /ota/v1/ (it authenticates devices itself);
	// OTAAPI serves /api/v1/ota/ behind API tokens (GET: read, else ota).
	OTADevice, OTAAPI http.Handler
	// Backup serves POST /api/v1/admin/backup (backup.Handler, which
	// checks for an admin token itself); nil leaves it out.
	Backup http.Handler
	// Dashboard serves everything else under / (nil: 404).
	Dashboard http.Handler
	// Metrics is the registry /metrics serves (nil: no /metrics).
	Metrics *prometheus.Registry
	// AuthRead requires a token with scope read for reads too.
	AuthRead bool
	// OnlineWindow and OfflineAfter decide a device's state (see
	// ingest.Device.StateAt). Defaults 30 s and 15 min.
	OnlineWindow, OfflineAfter time.Duration
	// Ready, when set, answers /readyz (nil: always ready).
	Ready func() bool
	Now   func() time.Time
	Log   *slog.Logger
}

// API is the HTTP handler.
type API struct {
	cfg Config
	mux *http.ServeMux
}

// New returns the handler.
func New(cfg Config) (*API, error) {
	if cfg.Devices == nil {
		return nil, errors.New("api: no device table")
	}
	if cfg.OnlineWindow <= 0 {
		cfg.OnlineWindow = 30 * time.Second
	}
	if cfg.OfflineAfter <= 0 {
		cfg.OfflineAfter = 15 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	a := &API{cfg: cfg, mux: http.NewServeMux()}
	m := a.mux
	read := func(h http.HandlerFunc) http.Handler { return a.auth(registry.ScopeRead, a.cfg.AuthRead, h) }
	m.Handle("GET /api/v1/devices", read(a.devices))
	m.Handle("GET /api/v1/devices/{id}", read(a.device))
	m.Handle("GET /api/v1/events", read(a.events))
	m.Handle("GET /api/v1/events/stream", read(a.stream))
	if cfg.Commands != nil {
		m.Handle("POST /api/v1/devices/{id}/commands", a.auth(registry.ScopeWrite, true, http.HandlerFunc(a.command)))
		m.Handle("GET /api/v1/commands/{id}", read(a.commandStatus))
	}
	if cfg.Query != nil {
		m.Handle("/api/v1/", a.auth(registry.ScopeRead, a.cfg.AuthRead, cfg.Query))
	}
	if cfg.Predict != nil {
		m.Handle("/api/v1/predict", a.auth(registry.ScopeRead, a.cfg.AuthRead, cfg.Predict))
	}
	if cfg.LegacyPredict != nil {
		m.Handle("/predict", a.auth(registry.ScopeRead, a.cfg.AuthRead, cfg.LegacyPredict))
	}
	if cfg.OTADevice != nil {
		m.Handle("/ota/v1/", cfg.OTADevice)
	}
	if cfg.OTAAPI != nil {
		m.Handle("GET /api/v1/ota/", a.auth(registry.ScopeRead, a.cfg.AuthRead, cfg.OTAAPI))
		m.Handle("POST /api/v1/ota/", a.auth(registry.ScopeOTA, true, cfg.OTAAPI))
	}
	if cfg.Backup != nil {
		m.Handle("POST /api/v1/admin/backup", cfg.Backup)
	}
	if cfg.Metrics != nil {
		m.Handle("GET /metrics", promhttp.HandlerFor(cfg.Metrics, promhttp.HandlerOpts{Registry: cfg.Metrics}))
	}
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	m.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if cfg.Ready != nil && !cfg.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	if cfg.Dashboard != nil {
		m.Handle("/", cfg.Dashboard)
	}
	return a, nil
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// bearer returns the token of an Authorization: Bearer header.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if tok, ok := strings.CutPrefix(h, "Bearer "); ok {
		return strings.TrimSpace(tok)
	}
	return ""
}

// auth requires a token with scope need when required is set.
func (a *API) auth(need registry.Scope, required bool, h http.Handler) http.Handler {
	if !required {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.cfg.Tokens == nil {
			writeError(w, http.StatusServiceUnavailable, "no token store: write operations are disabled")
			return
		}
		tok := bearer(r)
		if tok == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="loadwatch"`)
			writeError(w, http.StatusUnauthorized, "an API token is required (Authorization: Bearer ...)")
			return
		}
		if _, err := a.cfg.Tokens.CheckAPIToken(r.Context(), tok, need); err != nil {
			if errors.Is(err, registry.ErrForbidden) {
				writeError(w, http.StatusForbidden, "the API token lacks scope "+string(need))
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="loadwatch", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "invalid API token")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
