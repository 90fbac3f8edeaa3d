package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"loadwatch/internal/bench"
)

// benchCmd groups the performance and reliability harness.
type benchCmd struct {
	Fleet     benchFleetCmd     `cmd:"" help:"Simulated fleet against a server: readings/s, publish-to-stored latency, loss (reconciled against the store), server CPU and RSS."`
	Chaos     benchChaosCmd     `cmd:"" help:"Fleet under faults: server stop and SIGKILL with restarts, killed agents, hostile payloads; reconciles every acknowledged reading."`
	Retention benchRetentionCmd `cmd:"" help:"Server memory with retention: backfill hours of history for N devices, serve it with a live fleet, run the dashboard's queries, report RSS (anon, file), Go heap, head series, blocks and bytes per sample."`
}

// benchCommon are the flags both commands share.
type benchCommon struct {
	Devices    int           `name:"devices" default:"100" help:"Simulated devices (one MQTT connection each)."`
	Interval   time.Duration `name:"interval" default:"1s" help:"Time between two readings of one device."`
	Duration   time.Duration `name:"duration" default:"10s" help:"Length of the run."`
	Batch      int           `name:"batch" default:"1" help:"Readings per MQTT message (1 to 64)."`
	DutyCycled bool          `name:"duty-cycled" help:"Devices connect, send their held readings and disconnect every --batch readings, as sleeping agents do."`
	Window     int           `name:"window" default:"16" help:"PUBLISHes in flight per connection."`
	Seed       int64         `name:"seed" default:"1" help:"Seed of the simulated circuits and epochs."`
	Prefix     string        `name:"prefix" default:"bench" help:"Device ids are <prefix>-<n>."`
	Data       string        `name:"data" type:"path" help:"Data directory: of the running server (devices are registered in it), or for the child server (default: a temporary directory, removed after)."`
	NoModel    bool          `name:"no-model" help:"Child server: do not classify (default: classify with the default model, trained at first start)."`
	ServerLog  bool          `name:"server-log" help:"Show the child server's log on stderr."`
	Drain      time.Duration `name:"drain" default:"60s" help:"How long to wait for outstanding acknowledgements at the end."`
	JSON       bool          `name:"json" help:"Print one JSON object instead of the summary."`
	Quiet      bool          `name:"quiet" help:"No progress lines on stderr."`
}

func (c *benchCommon) options() (bench.Options, error) {
	exe, err := os.Executable()
	if err != nil {
		return bench.Options{}, err
	}
	extra := []string{"--log-level", "warn"}
	if c.NoModel {
		extra = append(extra, "--no-model")
	}
	o := bench.Options{
		Devices: c.Devices, Interval: c.Interval, Duration: c.Duration, Batch: c.Batch, DutyCycled: c.DutyCycled,
		Window: c.Window, Seed: c.Seed, Prefix: c.Prefix, DataDir: c.Data, Command: bench.ServeCommand(exe, extra...),
		DrainTimeout: c.Drain, Log: os.Stderr,
	}
	if c.Quiet {
		o.Log = io.Discard
	}
	if c.ServerLog {
		o.ServerLog = os.Stderr
	}
	if c.Devices < 1 || c.Batch < 1 || c.Batch > bench.MaxReplay || c.Interval <= 0 || c.Duration <= 0 {
		return o, fmt.Errorf("bench: need --devices >= 1, --batch 1..%d, --interval and --duration > 0", bench.MaxReplay)
	}
	return o, nil
}

type benchFleetCmd struct {
	benchCommon `embed:""`
	Broker      string        `name:"broker" help:"MQTT address (host:port) of a running server; needs --server and --data. Default: start a server in a child process."`
	Server      string        `name:"server" help:"HTTP base URL of a running server (its query API tells what was stored)."`
	Token       string        `name:"token" env:"LOADWATCH_TOKEN" help:"API token, if the running server needs one for reads."`
	ServerPID   int           `name:"server-pid" help:"Process id of the running server, to report its CPU and RSS (same machine)."`
	Ramp        bool          `name:"ramp" help:"Raise the rate step by step until p99 latency passes --max-p99 or the stored rate falls below 95 % of the offered one; report the knee."`
	RampStep    time.Duration `name:"ramp-step" default:"10s" help:"Length of one ramp step."`
	RampFactor  float64       `name:"ramp-factor" default:"1.5" help:"Rate multiplier from one ramp step to the next."`
	MaxP99      time.Duration `name:"max-p99" default:"100ms" help:"Latency bound of the ramp."`
}

func (c *benchFleetCmd) Run(ctx context.Context) error {
	o, err := c.options()
	if err != nil {
		return err
	}
	o.Broker, o.Server, o.Token, o.ServerPID = c.Broker, c.Server, c.Token, c.ServerPID
	o.Ramp, o.RampStep, o.RampFactor, o.MaxP99 = c.Ramp, c.RampStep, c.RampFactor, c.MaxP99
	if c.Ramp {
		o.RampSteps = max(1, int(c.Duration/c.RampStep))
	}
	rep, err := bench.RunFleet(ctx, o)
	if err != nil {
		return err
	}
	if c.JSON {
		if err := printJSON(rep); err != nil {
			return err
		}
	} else {
		printFleet(os.Stdout, &rep)
	}
	if rep.ReadingsLost > 0 {
		return fmt.Errorf("bench: %d acknowledged readings were not stored", rep.ReadingsLost)
	}
	return nil
}

type benchChaosCmd struct {
	benchCommon `embed:""`
	HostileRate float64       `name:"hostile-rate" default:"20" help:"Hostile payloads per second (fuzzed JSON, oversized, NaN/Inf, wrong types, negative power, far-future and replayed readings, other devices' topics)."`
	Down        time.Duration `name:"down" default:"1s" help:"How long the server, or a killed agent, stays down."`
	CrashAgents int           `name:"crash-agents" help:"Agents killed and restarted (default: a tenth of the devices, at least 1)."`
}

func (c *benchChaosCmd) Run(ctx context.Context) error {
	o, err := c.options()
	if err != nil {
		return err
	}
	rep, err := bench.RunChaos(ctx, bench.ChaosOptions{Options: o, HostileRate: c.HostileRate, Down: c.Down, CrashAgents: c.CrashAgents})
	if err != nil {
		return err
	}
	if c.JSON {
		if err := printJSON(rep); err != nil {
			return err
		}
	} else {
		printFleet(os.Stdout, &rep.Report)
		printChaos(os.Stdout, &rep)
	}
	var errs []error
	if rep.ReadingsLost > 0 {
		errs = append(errs, fmt.Errorf("%d acknowledged readings were not stored", rep.ReadingsLost))
	}
	if rep.HostileUnexpected > 0 {
		errs = append(errs, fmt.Errorf("%d hostile payloads got an unexpected answer", rep.HostileUnexpected))
	}
	if rep.ServerCrashes > 0 {
		errs = append(errs, fmt.Errorf("the server exited on its own %d times", rep.ServerCrashes))
	}
	if len(errs) > 0 {
		return fmt.Errorf("bench chaos: %w", errors.Join(errs...))
	}
	return nil
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func printFleet(w io.Writer, r *bench.Report) {
	mode := "always connected"
	if r.DutyCycled {
		mode = "duty-cycled"
	}
	fmt.Fprintf(w, "fleet: %d devices, a reading every %v, %d per message, %s, %.1f s\n",
		r.Devices, time.Duration(r.IntervalMS*float64(time.Millisecond)), r.Batch, mode, r.DurationS)
	if r.WarmupS > 0 {
		fmt.Fprintf(w, "warm-up: every device's first reading acknowledged %.1f s after all connected\n", r.WarmupS)
	}
	fmt.Fprintf(w, "readings/s: %.0f stored of %.0f offered\n", r.ReadingsPerSecond, r.TargetPerSecond)
	fmt.Fprintf(w, "readings: sent %d, acknowledged %d, stored %d, lost %d, unacknowledged %d, resent %d, refused and retried %d, dead-lettered %d\n",
		r.ReadingsSent, r.ReadingsAcked, r.ReadingsStored, r.ReadingsLost, r.ReadingsUnacked, r.ReadingsResent, r.ReadingsRefused, r.ReadingsDead)
	if r.ReadingsLost == 0 {
		fmt.Fprintln(w, "lost = 0")
	} else {
		for _, g := range r.Gaps {
			fmt.Fprintf(w, "  lost: device %s epoch %s seq %d ts %s\n", g.Device, g.Epoch, g.Seq, g.Time.Format(time.RFC3339Nano))
		}
	}
	fmt.Fprintf(w, "publish-to-stored latency (PUBACK): p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", r.LatencyP50MS, r.LatencyP99MS, r.LatencyMaxMS)
	fmt.Fprintf(w, "server: CPU %.0f %% of one core, RSS %.0f MiB (peak %.0f MiB); generator: CPU %.0f %%, RSS %.0f MiB\n",
		r.ServerCPUPercent, mib(r.ServerRSSBytes), mib(r.ServerPeakRSS), r.GeneratorCPU, mib(r.GeneratorRSS))
	if r.LateTicks > 0 {
		fmt.Fprintf(w, "late ticks (readings not taken because a publisher was behind): %d\n", r.LateTicks)
	}
	for _, s := range r.Ramp {
		fmt.Fprintf(w, "ramp: offered %.0f/s, stored %.0f/s, p99 %.1f ms, server CPU %.0f %%, held %v\n",
			s.TargetPerSecond, s.ReadingsPerSecond, s.LatencyP99MS, s.ServerCPUPercent, s.Held)
	}
	if r.Knee != nil {
		fmt.Fprintf(w, "knee: %.0f readings/s stored with p99 %.1f ms\n", r.Knee.ReadingsPerSecond, r.Knee.LatencyP99MS)
	} else if len(r.Ramp) > 0 {
		fmt.Fprintln(w, "knee: none (the first step did not hold)")
	}
}

func printChaos(w io.Writer, r *bench.ChaosReport) {
	for _, e := range r.Events {
		fmt.Fprintf(w, "fault %s at %.1f s: down %.0f ms, first acknowledgement %.0f ms after the restart\n", e.Kind, e.AtS, e.DownMS, e.RecoveredMS)
	}
	fmt.Fprintf(w, "server processes: %d, crashes: %d\n", r.ServerStarts, r.ServerCrashes)
	kinds := make([]string, 0, len(r.Hostile))
	for k := range r.Hostile {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		o := r.Hostile[k]
		fmt.Fprintf(w, "hostile %s: %d sent, answers %v, unexpected %d\n", k, o.Sent, o.Codes, o.Unexpected)
	}
	reasons := make([]string, 0, len(r.Rejections))
	for k := range r.Rejections {
		reasons = append(reasons, k)
	}
	sort.Strings(reasons)
	fmt.Fprint(w, "server rejections by reason:")
	for _, k := range reasons {
		fmt.Fprintf(w, " %s=%.0f", k, r.Rejections[k])
	}
	fmt.Fprintln(w)
}
