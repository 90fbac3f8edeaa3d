package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"loadwatch/internal/demo"
	"loadwatch/internal/server"
)

// demoCmd is `loadwatch demo`: the server, its embedded broker and four
// simulated duty-cycled agents in one process, with no setup.
type demoCmd struct {
	HTTP     string     `name:"http" default:"127.0.0.1:8080" help:"HTTP listen address (API, /metrics, dashboard)."`
	MQTT     string     `name:"mqtt" default:"127.0.0.1:1883" help:"Embedded MQTT broker TCP listen address."`
	Data     string     `name:"data" type:"path" placeholder:"DIR" help:"Keep the data in DIR (created if needed; reused next time). Default: a temporary directory, removed at exit."`
	LogLevel slog.Level `name:"log-level" default:"warn" help:"Log level of the server and the agents: debug, info, warn, error."`
	// The same integrations as serve; the demo's dashboard reads are open.
	integrationFlags

	// test hooks
	out     io.Writer
	onReady func(d *demo.Demo, dataDir string)
}

func (c *demoCmd) Run(ctx context.Context) error {
	out := c.out
	if out == nil {
		out = os.Stdout
	}
	dir := c.Data
	if dir == "" {
		tmp, err := os.MkdirTemp("", "loadwatch-demo-")
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: c.LogLevel}))
	sc := server.Config{Logger: log}
	if err := c.apply(&sc); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	d, err := demo.New(demo.Config{
		DataDir: dir, HTTPAddr: c.HTTP, MQTTAddr: c.MQTT, Out: out, Logger: log,
		DashboardFunc: sc.DashboardFunc, Notifiers: sc.Notifiers, Services: sc.Services,
	})
	if err != nil {
		return err
	}
	if c.onReady != nil {
		go func() {
			select {
			case <-d.Ready():
				c.onReady(d, dir)
			case <-ctx.Done():
			}
		}()
	}
	err = d.Run(ctx)
	if c.Data == "" {
		fmt.Fprintf(out, "loadwatch demo: stopped; removed %s\n", dir)
	} else {
		fmt.Fprintf(out, "loadwatch demo: stopped; the data stays in %s (run 'loadwatch serve --data %s' to look at it)\n", dir, dir)
	}
	return err
}
