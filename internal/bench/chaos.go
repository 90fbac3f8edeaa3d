package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// ChaosOptions configures RunChaos: a fleet (Options; Duration is the
// whole run) against a server in a child process, with faults at fixed
// points of the run.
type ChaosOptions struct {
	Options
	// HostileRate is the hostile payloads per second [20].
	HostileRate float64
	// Down is how long the server or a crashed agent stays down [1 s].
	Down time.Duration
	// CrashAgents is how many simulated agents are killed and restarted
	// [max(1, devices/10)].
	CrashAgents int
}

// ChaosEvent is one injected fault.
type ChaosEvent struct {
	Kind string  `json:"kind"` // broker_stop, server_sigkill, agent_kill
	AtS  float64 `json:"at_s"` // since the fleet started
	// DownMS is how long the server or agents were down; RecoveredMS is
	// from their restart to the next reading the fleet got acknowledged.
	DownMS      float64 `json:"down_ms"`
	RecoveredMS float64 `json:"recovered_ms"`
}

// ChaosReport is the outcome of a chaos run: the fleet's report (its
// reconciliation covers every acknowledged reading), the faults, the
// hostile payloads' answers and the server's rejection counters by reason
// (summed over the server's processes, read just before each stop).
type ChaosReport struct {
	Report
	Events            []ChaosEvent       `json:"events"`
	Hostile           map[string]Outcome `json:"hostile"`
	HostileUnexpected uint64             `json:"hostile_unexpected"`
	Rejections        map[string]float64 `json:"server_rejections"`
	ServerStarts      int                `json:"server_starts"`
	ServerCrashes     int                `json:"server_crashes"` // exits nobody asked for
}

// RunChaos runs the fleet with (a) a graceful stop and restart of the
// server (its embedded broker stops with it), (b) a SIGKILL and restart,
// (c) killed and restarted agents, and (d) hostile payloads at a fixed
// rate throughout, then drains and reconciles every acknowledged reading
// against the store.
func RunChaos(ctx context.Context, o ChaosOptions) (ChaosReport, error) {
	o.defaults()
	if o.Broker != "" || o.Server != "" {
		return ChaosReport{}, errors.New("bench: chaos stops and kills the server, so it runs its own (no --broker/--server)")
	}
	if o.HostileRate <= 0 {
		o.HostileRate = 20
	}
	if o.Down <= 0 {
		o.Down = time.Second
	}
	if o.CrashAgents <= 0 {
		o.CrashAgents = max(1, o.Devices/10)
	}
	e, creds, err := setup(ctx, &o.Options, 1)
	if err != nil {
		return ChaosReport{}, err
	}
	defer e.close()
	hostileCred, creds := creds[len(creds)-1], creds[:len(creds)-1]
	f, err := NewFleet(FleetConfig{Devices: creds, Interval: o.Interval, Batch: o.Batch, DutyCycled: o.DutyCycled,
		Window: o.Window, Broker: e.broker, Seed: o.Seed, Log: o.Log})
	if err != nil {
		return ChaosReport{}, err
	}
	defer f.Close()
	if err := f.Connect(ctx); err != nil {
		return ChaosReport{}, err
	}
	rep := ChaosReport{Report: Report{Devices: len(creds), IntervalMS: ms(o.Interval), Batch: max(o.Batch, 1), DutyCycled: o.DutyCycled,
		TargetPerSecond: float64(len(creds)) / o.Interval.Seconds()}, Rejections: map[string]float64{}}

	inj := newInjector(hostileCred, creds[0].ID, e.broker, o.HostileRate, o.Seed)
	ictx, stopInj := context.WithCancel(ctx)
	injDone := make(chan struct{})
	go func() { inj.run(ictx); close(injDone) }()
	defer func() { stopInj(); <-injDone }()

	scrape := func() {
		m, err := e.api.Metrics(ctx)
		if err != nil {
			fmt.Fprintf(o.Log, "bench: metrics before stop: %v\n", err)
			return
		}
		for k, v := range Rejections(m) {
			rep.Rejections[k] += v
		}
	}
	crashes := 0
	// checkAlive counts a server that exited without being asked to.
	checkAlive := func() {
		if e.child.PID() != 0 && !e.child.Alive() {
			crashes++
			fmt.Fprintf(o.Log, "bench: the server exited on its own; restarting it\n")
			e.child.Kill()
			if err := e.child.Start(ctx, o.StartTimeout); err != nil {
				fmt.Fprintf(o.Log, "bench: restart: %v\n", err)
			}
		}
	}
	t0 := time.Now()
	f.Start(ctx)
	at := func(frac float64) bool {
		d := time.Until(t0.Add(time.Duration(frac * float64(o.Duration))))
		for d > 0 {
			step := min(d, 200*time.Millisecond)
			select {
			case <-ctx.Done():
				return false
			case <-time.After(step):
			}
			checkAlive()
			d = time.Until(t0.Add(time.Duration(frac * float64(o.Duration))))
		}
		return ctx.Err() == nil
	}
	recovered := func(from time.Time) float64 {
		a0 := f.Stats().ReadingsAcked
		for time.Since(from) < 2*time.Minute && ctx.Err() == nil {
			if f.Stats().ReadingsAcked > a0 {
				return ms(time.Since(from))
			}
			time.Sleep(5 * time.Millisecond)
		}
		return -1
	}
	restartServer := func(kind string, stop func() error) {
		ev := ChaosEvent{Kind: kind, AtS: time.Since(t0).Seconds()}
		inj.pause()
		scrape()
		down := time.Now()
		if err := stop(); err != nil {
			fmt.Fprintf(o.Log, "bench: %s: %v\n", kind, err)
		}
		time.Sleep(o.Down)
		up := time.Now()
		if err := e.child.Start(ctx, o.StartTimeout); err != nil {
			fmt.Fprintf(o.Log, "bench: restart after %s: %v\n", kind, err)
		}
		ev.DownMS = ms(time.Since(down))
		inj.resume()
		ev.RecoveredMS = recovered(up)
		fmt.Fprintf(o.Log, "bench: %s at %.1fs: down %.0f ms, first acknowledgement %.0f ms after restart\n", kind, ev.AtS, ev.DownMS, ev.RecoveredMS)
		rep.Events = append(rep.Events, ev)
	}

	p0, _ := e.proc()
	g0, _ := ReadProc(os.Getpid())
	if at(0.25) {
		restartServer("broker_stop", e.child.Stop)
	}
	if at(0.5) {
		restartServer("server_sigkill", e.child.Kill)
	}
	if at(0.7) {
		ev := ChaosEvent{Kind: "agent_kill", AtS: time.Since(t0).Seconds()}
		n := min(o.CrashAgents, len(creds))
		for i := range n {
			f.CrashAgent(i * len(creds) / n)
		}
		time.Sleep(o.Down)
		up := time.Now()
		for i := range n {
			f.RestartAgent(i * len(creds) / n)
		}
		ev.DownMS = ms(o.Down)
		ev.RecoveredMS = recovered(up)
		fmt.Fprintf(o.Log, "bench: %d agents killed at %.1fs and restarted after %v\n", n, ev.AtS, o.Down)
		rep.Events = append(rep.Events, ev)
	}
	at(1)
	f.Stop()
	el := time.Since(t0)
	stopInj()
	<-injDone
	checkAlive()

	st := f.Stats()
	rep.DurationS = el.Seconds()
	rep.ReadingsPerSecond = float64(st.ReadingsAcked) / el.Seconds()
	if p1, ok := e.proc(); ok {
		rep.ServerRSSBytes, rep.ServerPeakRSS = p1.RSS, p1.PeakRSS
		if p1.CPU >= p0.CPU { // the last process only
			rep.ServerCPUPercent = 100 * (p1.CPU - p0.CPU).Seconds() / el.Seconds()
		}
	}
	if g, err := ReadProc(os.Getpid()); err == nil {
		rep.GeneratorRSS = g.RSS
		rep.GeneratorCPU = 100 * (g.CPU - g0.CPU).Seconds() / el.Seconds()
	}
	lat := f.Latency()
	rep.LatencyP50MS, rep.LatencyP99MS, rep.LatencyMaxMS = ms(lat.Quantile(.5)), ms(lat.Quantile(.99)), ms(lat.Max())
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}
	if err := f.Drain(ctx, o.DrainTimeout); err != nil {
		fmt.Fprintf(o.Log, "%v\n", err)
	}
	scrape()
	rep.Hostile = inj.outcomes()
	for _, oc := range rep.Hostile {
		rep.HostileUnexpected += oc.Unexpected
	}
	rep.ServerStarts, rep.ServerCrashes = e.child.Starts(), crashes
	err = fill(ctx, &rep.Report, f, e.api)
	return rep, err
}
