package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"loadwatch/internal/api"
	"loadwatch/internal/classify"
	"loadwatch/internal/ingest"
	"loadwatch/internal/labels"
	"loadwatch/internal/readingscsv"
	"loadwatch/internal/registry"
	"loadwatch/internal/store"
	"loadwatch/internal/tariff"
)

// Parts are the pieces of a running server the dashboard is built from.
type Parts struct {
	Devices  api.Devices        // *ingest.Pipeline
	Registry *registry.Registry // sign-in, devices not yet heard from
	Bus      *ingest.Bus        // events and the live stream
	Query    http.Handler       // promapi handler (Prometheus-compatible API)
	OTA      http.Handler       // optional: otaserver API handler (the OTA page reads its status)
	Commands Commander          // *api.Commands
	Relays   *RelayTracker      // must be among ingest's notifiers
	Store    *store.Store
	Holder   *classify.Holder // nil: no labelling or retraining
	DataDir  string           // labels.json and models/ go here
	// Bundled returns the bundled training rows for retraining (nil: the
	// labelled spans alone).
	Bundled func(ctx context.Context) ([]readingscsv.Row, error)
	Tariff  string // tariff text form (see package tariff); "" prices at 0
	// TariffZone is the time zone of the tariff's clock ("" local).
	TariffZone      string
	OpenReads       bool
	InsecureCookies bool
	Alerts          http.Handler // optional test endpoint
	Now             func() time.Time
	Log             *slog.Logger
}

// Assemble builds the dashboard from a server's parts. ctx bounds the
// background retraining jobs. Mount the result as api.Config.Dashboard.
func Assemble(ctx context.Context, p Parts) (*Dashboard, error) {
	if p.Devices == nil || p.Store == nil || p.Query == nil {
		return nil, errors.New("web: Assemble needs Devices, Store and Query")
	}
	reads, err := api.New(api.Config{Devices: p.Devices, Registry: regOrNil(p.Registry), Bus: p.Bus, Query: p.Query, OTAAPI: p.OTA, Now: p.Now, Log: p.Log})
	if err != nil {
		return nil, err
	}
	tr := &tariff.Tariff{}
	if p.Tariff != "" {
		if tr, err = tariff.Parse(p.Tariff); err != nil {
			return nil, fmt.Errorf("web: tariff: %w", err)
		}
	}
	if p.TariffZone != "" {
		if tr.Loc, err = time.LoadLocation(p.TariffZone); err != nil {
			return nil, fmt.Errorf("web: tariff zone: %w", err)
		}
	}
	cfg := Config{Reads: reads, OpenReads: p.OpenReads, Commands: p.Commands, Relays: p.Relays, InsecureCookies: p.InsecureCookies,
		Energy: &EnergyService{Q: p.Store, Tariff: tr, Now: p.Now}, Alerts: p.Alerts, Now: p.Now, Log: p.Log}
	if p.Registry != nil {
		cfg.Login = RegistryLogin{Reg: p.Registry}
	}
	if p.Holder != nil && p.DataDir != "" {
		spans, err := labels.Open(filepath.Join(p.DataDir, "labels.json"), p.Now)
		if err != nil {
			return nil, err
		}
		svc, err := labels.New(labels.Config{Spans: spans, Q: p.Store, Holder: p.Holder, ModelDir: filepath.Join(p.DataDir, "models"),
			Bundled: p.Bundled, User: User, Now: p.Now, Log: p.Log})
		if err != nil {
			return nil, err
		}
		cfg.Labels = svc.Handler(ctx)
	}
	return New(cfg)
}

// regOrNil keeps a nil *registry.Registry from becoming a non-nil
// interface.
func regOrNil(r *registry.Registry) api.Registry {
	if r == nil {
		return nil
	}
	return r
}
