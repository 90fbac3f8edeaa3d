// Command loadwatch is the loadwatch server and every tool around it: the
// PZEM-004T link tool, the virtual meter and simulators, the classifier, the
// server and demo, device registry, OTA releases and benchmarks.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"
)

// cli is the command tree. Each command lives in its own file of this
// package and is wired here, the one place that joins parts together.
type cli struct {
	Version versionCmd `cmd:"" help:"Print version, commit, build date and Go version."`
	Sim     simCmd     `cmd:"" help:"Simulators: a virtual PZEM-004T meter and a labelled dataset generator."`
	Pzem    pzemCmd    `cmd:"" help:"PZEM-004T meter tool: read, scan, set-address, set-alarm, reset-energy, calibrate."`
	Model   modelCmd   `cmd:"" help:"Appliance classifier: train, evaluate, predict and cross-validate Random Forest models."`
	Ota     otaCmd     `cmd:"" help:"Over-the-air updates: signing keys, publish signed releases, staged rollout (list, promote, halt), serve."`
	Device  deviceCmd  `cmd:"" help:"Device registry: add, list, show, revoke, rotate, delete (works while serve runs)."`
	User    userCmd    `cmd:"" help:"Dashboard users: add, passwd, list, delete (works while serve runs)."`
	Serve   serveCmd   `cmd:"" help:"Run the server: MQTT broker (or an external one), ingest, time-series store, HTTP API and /metrics."`
	Demo    demoCmd    `cmd:"" help:"Run a complete demo in one process: server, embedded broker and four simulated duty-cycled agents; no setup."`
	Export  exportCmd  `cmd:"" help:"Export one device's stored readings as the readings CSV (labelled with the stored class)."`
	Import  importCmd  `cmd:"" help:"Import readings CSV files into a data directory's store (idempotent)."`
	Backup  backupCmd  `cmd:"" help:"Back up a data directory's store and registry consistently (also while serve runs)."`
	Restore restoreCmd `cmd:"" help:"Restore a backup into an empty data directory."`
	Bench   benchCmd   `cmd:"" help:"Performance and reliability harness: simulated fleet (readings/s, latency, loss) and chaos runs."`
}

const description = `loadwatch monitors mains power with PZEM-004T v3 meters: it reads the meters
over Modbus RTU, tells which appliances are running, catches grid anomalies and
stores everything in an embedded time-series database.

Run 'loadwatch <command> --help' for the details of one command.`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var c cli
	k := kong.Parse(&c,
		kong.Name("loadwatch"),
		kong.Description(description),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.BindTo(ctx, (*context.Context)(nil)),
	)
	err := k.Run()
	k.FatalIfErrorf(err)
}
