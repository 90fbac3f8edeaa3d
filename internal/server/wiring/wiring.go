// Package wiring adds the parts around the core server that `loadwatch
// serve` and `loadwatch demo` both run: the dashboard (internal/web) with
// its relay tracker and retraining on the bundled synthetic data, the Home
// Assistant discovery bridge (internal/hass) and the alerts dispatcher
// (internal/alerts). It is the one place both commands wire them, so they
// cannot drift apart:
//
//	cfg := server.Config{DataDir: dir}
//	if err := wiring.Apply(&cfg, wiring.Options{Tariff: "0.30 EUR", HASS: true}); err != nil { ... }
//	s, err := server.New(cfg)
package wiring

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"loadwatch/internal/alerts"
	"loadwatch/internal/api"
	"loadwatch/internal/hass"
	"loadwatch/internal/readingscsv"
	"loadwatch/internal/server"
	"loadwatch/internal/tariff"
	"loadwatch/internal/web"
)

// Options choose what is added. The zero value adds the dashboard only,
// with reads behind a sign-in when cfg.AuthRead is set.
type Options struct {
	// NoDashboard leaves / unserved (the API and /metrics stay).
	NoDashboard bool
	// Tariff prices energy on the dashboard (package tariff's text form,
	// e.g. "0.30 EUR; 22:00-06:00 0.18"); "" prices at 0. TariffZone is
	// the time zone of its clock ("" the server's local zone).
	Tariff, TariffZone string
	// InsecureCookies leaves the Secure flag off the dashboard's session
	// cookie (plain HTTP on a LAN; see web.Config).
	InsecureCookies bool
	// AlertsFile is an alerts configuration (internal/alerts JSON); ""
	// sends no alerts.
	AlertsFile string
	// HASS announces every device to Home Assistant through MQTT
	// discovery under HASSPrefix ["homeassistant"].
	HASS       bool
	HASSPrefix string
}

// Apply adds the dashboard (cfg.DashboardFunc), its relay tracker and the
// optional bridge and dispatcher (cfg.Notifiers, cfg.Services) to cfg.
// It checks the options now (tariff, time zone, alerts file), so that a
// bad flag fails before the server starts. Reads on the dashboard are open
// unless cfg.AuthRead is set.
func Apply(cfg *server.Config, o Options) error {
	if o.Tariff != "" {
		if _, err := tariff.Parse(o.Tariff); err != nil {
			return fmt.Errorf("tariff: %w", err)
		}
	}
	if o.TariffZone != "" {
		if _, err := time.LoadLocation(o.TariffZone); err != nil {
			return fmt.Errorf("tariff time zone: %w", err)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	var disp *alerts.Dispatcher
	if o.AlertsFile != "" {
		ac, err := alerts.LoadFile(o.AlertsFile)
		if err != nil {
			return err
		}
		ac.Log = log
		if disp, err = alerts.New(ac); err != nil {
			return err
		}
		cfg.Notifiers = append(cfg.Notifiers, disp)
		cfg.Services = append(cfg.Services, server.Service{Name: "alerts", Run: func(ctx context.Context, _ server.Parts) error {
			return disp.Run(ctx)
		}})
	}
	if o.HASS {
		pub := &latePublisher{}
		hb := hass.New(hass.Config{Pub: pub, DiscoveryPrefix: o.HASSPrefix, Log: log})
		cfg.Notifiers = append(cfg.Notifiers, hb)
		cfg.Services = append(cfg.Services, server.Service{Name: "home assistant bridge", Run: func(ctx context.Context, p server.Parts) error {
			pub.set(p.Publisher)
			return hb.Run(ctx)
		}})
	}
	if o.NoDashboard {
		return nil
	}
	relays := web.NewRelayTracker()
	cfg.Notifiers = append(cfg.Notifiers, relays)
	openReads := !cfg.AuthRead
	cfg.DashboardFunc = func(ctx context.Context, p server.Parts) (http.Handler, error) {
		wp := web.Parts{Devices: p.Pipeline, Registry: p.Registry, Bus: p.Bus, Query: p.Query,
			OTA: p.OTA, Commands: p.Commands, Relays: relays, Store: p.Store, Holder: p.Holder, DataDir: p.DataDir,
			Bundled: bundled,
			Tariff:  o.Tariff, TariffZone: o.TariffZone, OpenReads: openReads, InsecureCookies: o.InsecureCookies,
			Now: p.Now, Log: p.Log}
		if disp != nil {
			wp.Alerts = disp.TestHandler(web.User)
		}
		return web.Assemble(ctx, wp)
	}
	return nil
}

// bundled is the training data retraining adds to the labelled spans:
// the default model's synthetic dataset, so that a retrained model keeps
// the seed classes.
func bundled(ctx context.Context) ([]readingscsv.Row, error) { return server.DefaultDataset(ctx) }

// latePublisher forwards to the server's publisher, known once the server
// runs (the bridge is built before).
type latePublisher struct{ p atomic.Pointer[api.Publisher] }

func (l *latePublisher) set(p api.Publisher) { l.p.Store(&p) }

var errNotYet = errors.New("wiring: the server's MQTT publisher is not up yet")

func (l *latePublisher) Publish(topic string, payload []byte, retain bool, qos byte) error {
	p := l.p.Load()
	if p == nil || *p == nil {
		return errNotYet
	}
	return (*p).Publish(topic, payload, retain, qos)
}
