package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"loadwatch/internal/bench"
	"loadwatch/internal/forest"
	"loadwatch/internal/loadsim"
	"loadwatch/internal/server"
)

type benchRetentionCmd struct {
	Devices      int           `name:"devices" default:"100" help:"Simulated devices (history and live fleet)."`
	Hours        float64       `name:"hours" default:"24" help:"Hours of history backfilled into the store before the server starts (0: none, the baseline)."`
	Interval     time.Duration `name:"interval" default:"5s" help:"Time between two readings of one device, history and live."`
	Live         time.Duration `name:"live" default:"60s" help:"How long the live fleet runs against the server, so the head holds data too."`
	Schedule     string        `name:"schedule" default:"day" enum:"day,hour" help:"Appliance schedule of the history: day (loadsim's reference day, mostly standby) or hour (the dense reference hour)."`
	NoModel      bool          `name:"no-model" help:"Neither the history nor the server classifies (no class series)."`
	CheckDevices int           `name:"check-devices" default:"2" help:"Devices whose backfilled series are read back through the query API and compared with what was written."`
	Seed         int64         `name:"seed" default:"1" help:"Seed of the simulated circuits and epochs."`
	Prefix       string        `name:"prefix" default:"bench" help:"Device ids are <prefix>-<n>."`
	Data         string        `name:"data" type:"path" help:"Data directory for the child server, kept after the run (default: a temporary directory, removed after)."`
	ServerLog    bool          `name:"server-log" help:"Show the child server's log on stderr."`
	JSON         bool          `name:"json" help:"Print one JSON object instead of the table."`
	Quiet        bool          `name:"quiet" help:"No progress lines on stderr."`
}

func (c *benchRetentionCmd) Run(ctx context.Context) error {
	if c.Devices < 1 || c.Hours < 0 || c.Interval <= 0 || c.Live <= 0 {
		return fmt.Errorf("bench retention: need --devices >= 1, --hours >= 0, --interval and --live > 0")
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	extra := []string{"--log-level", "warn"}
	o := bench.RetentionOptions{Devices: c.Devices, Hours: c.Hours, Interval: c.Interval, Live: c.Live, Seed: c.Seed,
		Prefix: c.Prefix, DataDir: c.Data, CheckDevices: c.CheckDevices, Log: os.Stderr}
	if c.Quiet {
		o.Log = io.Discard
	}
	if c.ServerLog {
		o.ServerLog = os.Stderr
	}
	if c.Schedule == "hour" {
		s := loadsim.ReferenceSchedule()
		o.Schedule = &s
	}
	if c.NoModel {
		extra = append(extra, "--no-model")
	} else {
		t0 := time.Now()
		var m *forest.Model
		if m, err = server.TrainDefaultModel(ctx); err != nil {
			return fmt.Errorf("bench retention: %w", err)
		}
		o.Model = m
		fmt.Fprintf(o.Log, "bench: trained the default model in %v\n", time.Since(t0).Round(time.Millisecond))
	}
	o.Command = bench.ServeCommand(exe, extra...)
	rep, err := bench.RunRetention(ctx, o)
	if err != nil {
		return err
	}
	if c.JSON {
		if err := printJSON(rep); err != nil {
			return err
		}
	} else {
		printRetention(os.Stdout, &rep)
	}
	if rep.CheckMismatches > 0 {
		return fmt.Errorf("bench retention: %d backfilled series did not read back as written (%s)", rep.CheckMismatches, rep.CheckMismatchOne)
	}
	return nil
}

func printRetention(w io.Writer, r *bench.RetentionReport) {
	fmt.Fprintf(w, "retention: %d devices, %g h of history at %g s, %g s live, classified %v (%s, load %s)\n",
		r.Devices, r.Hours, r.IntervalS, r.LiveS, r.Classified, r.Date, r.LoadAvg)
	row := func(k, f string, a ...any) { fmt.Fprintf(w, "  %-34s "+f+"\n", append([]any{k}, a...)...) }
	if r.Hours > 0 {
		row("backfill", "%d readings, %d samples (%.2f per reading) in %.0f s", r.BackfillReadings, r.BackfillSamples, r.SamplesPerReading, r.BackfillS)
		row("read back", "%d devices, %d series, %d samples, %d mismatches", r.CheckedDevices, r.CheckedSeries, r.CheckedSamples, r.CheckMismatches)
	}
	row("empty server", "RSS %.1f MiB (anon %.1f MiB)", mib(r.RSSBaseline), mib(r.AnonBaseline))
	row("server start", "%.1f s, RSS %.1f MiB (anon %.1f MiB)", r.ServerStartS, mib(r.RSSIdle), mib(r.AnonIdle))
	row("live", "%d readings, %d samples, server CPU %.0f %%", r.LiveReadings, r.LiveSamples, r.ServerCPULive)
	row("head series", "%d", r.HeadSeries)
	row("RSS (VmRSS)", "%.1f MiB (peak %.1f MiB)", mib(r.RSS), mib(r.PeakRSS))
	row("  anonymous (RssAnon)", "%.1f MiB", mib(r.RSSAnon))
	row("  file-backed (RssFile)", "%.1f MiB, of which store files %.1f MiB (index %.1f, chunks %.1f, head chunks %.1f)",
		mib(r.RSSFile), mib(r.RSSFileStore), mib(r.StoreMaps.Index), mib(r.StoreMaps.Chunks), mib(r.StoreMaps.HeadChunks))
	row("  before the queries", "RSS %.1f MiB, anon %.1f MiB, store files %.1f MiB (index %.1f, chunks %.1f)",
		mib(r.RSSBeforeQueries), mib(r.AnonBeforeQueries), mib(r.StoreMapsBeforeQuery.Index+r.StoreMapsBeforeQuery.Chunks+r.StoreMapsBeforeQuery.HeadChunks+r.StoreMapsBeforeQuery.Other),
		mib(r.StoreMapsBeforeQuery.Index), mib(r.StoreMapsBeforeQuery.Chunks))
	row("Go heap in use", "%.1f MiB (Go runtime total %.1f MiB, %d goroutines)", mib(r.HeapInuse), mib(r.GoSys), r.Goroutines)
	row("disk", "%d blocks %.1f MiB (index %.1f MiB), WAL %.1f MiB, head chunks %.1f MiB", r.Blocks, mib(r.BlockBytes), mib(r.IndexBytes), mib(r.WALBytes), mib(r.HeadChunkBytes))
	row("samples stored", "%d", r.SamplesStored)
	row("bytes/sample on disk (blocks)", "%.2f", r.DiskBytesPerSample)
	row("bytes/sample resident (RSS)", "%.2f", r.ResidentBytesPerSample)
	row("store file bytes/block sample", "%.3f", r.FileBytesPerBlockSample)
	row("anon bytes/head series", "%.0f", r.AnonBytesPerHeadSeries)
	keys := make([]string, 0, len(r.QueryMS))
	for k := range r.QueryMS {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		row("query "+k, "%.1f ms", r.QueryMS[k])
	}
	row("server CPU on the queries", "%.2f s", r.QueryCPUS)
	e := r.Extrapolated
	row(fmt.Sprintf("at %d devices, %g h, %g s", e.Devices, e.Hours, e.IntervalS), "RSS %.0f MiB (anon %.0f, file %.0f), disk %.0f MiB, %.3g samples",
		e.RSS/(1<<20), e.Anon/(1<<20), e.File/(1<<20), e.Disk/(1<<20), e.Samples)
	row("  formula", "%s", e.Formula)
}
