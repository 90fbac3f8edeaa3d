// Command loadwatch-agent is the loadwatch edge agent for a Raspberry
// Pi-class Linux board: it samples PZEM-004T meters, protects the circuit
// with a local relay cut-off, reports over MQTT v5 and updates itself over
// the air. It is built with CGO_ENABLED=0 for arm64 and armv7.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"

	"loadwatch/internal/buildinfo"
)

type cli struct {
	Version  versionCmd  `cmd:"" help:"Print version, commit, build date and Go version."`
	Run      runCmd      `cmd:"" help:"Run the agent: sample the meters, protect the circuit, report over MQTT (duty-cycled, store-and-forward)."`
	Pzem     pzemCmd     `cmd:"" help:"PZEM-004T meter tool: read, scan, set-address, set-alarm, reset-energy, calibrate."`
	Update   updateCmd   `cmd:"" help:"Check for a signed update now and apply it (download, verify, swap, restart, health check, rollback)."`
	OtaGuard otaGuardCmd `cmd:"" name:"ota-guard" help:"Supervisor pre-start hook: finish an interrupted update, roll back a new version that keeps failing."`
}

type versionCmd struct {
	JSON bool `help:"Print one JSON object instead of a line."`
}

func (v *versionCmd) Run() error {
	info := buildinfo.Get("loadwatch-agent")
	if v.JSON {
		return json.NewEncoder(os.Stdout).Encode(info)
	}
	_, err := fmt.Println(info)
	return err
}

const description = `loadwatch-agent reads PZEM-004T v3 meters on a serial bus, trips a relay
locally when limits are exceeded, and reports readings, events and status to a
loadwatch server over MQTT v5.

Run 'loadwatch-agent <command> --help' for the details of one command.`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var c cli
	k := kong.Parse(&c,
		kong.Name("loadwatch-agent"),
		kong.Description(description),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.BindTo(ctx, (*context.Context)(nil)),
	)
	err := k.Run()
	k.FatalIfErrorf(err)
}
