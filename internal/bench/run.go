package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"loadwatch/internal/registry"
)

// Register adds n devices named <prefix>-<i> to the registry in dataDir
// (which a running server may have open) and returns their credentials. A
// device that exists gets a new token (Rotate).
func Register(ctx context.Context, dataDir, prefix string, n int) ([]Credential, error) {
	reg, err := registry.Open(ctx, registry.Path(dataDir), nil)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer reg.Close()
	creds := make([]Credential, n)
	for i := range creds {
		id := fmt.Sprintf("%s-%05d", prefix, i)
		_, tok, err := reg.Add(ctx, registry.NewDevice{ID: id})
		if errors.Is(err, registry.ErrExists) {
			tok, err = reg.Rotate(ctx, id)
		}
		if err != nil {
			return nil, fmt.Errorf("bench: register %s: %w", id, err)
		}
		creds[i] = Credential{ID: id, Token: tok}
	}
	return creds, nil
}

// Options configures RunFleet. Zero fields mean the documented defaults.
type Options struct {
	Devices    int           // [100]
	Interval   time.Duration // between readings of one device [1 s]
	Duration   time.Duration // of the measured run [10 s]
	Batch      int           // readings per message [1]
	DutyCycled bool
	Window     int // in-flight window per connection [16]
	Seed       int64
	Prefix     string // device ids <prefix>-<i> ["bench"]

	// Broker (host:port) and Server (HTTP base URL) name a running
	// server; DataDir must then be its data directory (devices are
	// registered there). Without them, a server is started in a child
	// process with Command, on DataDir (a temporary directory when empty).
	Broker, Server string
	Token          string // API token for reads, if the server needs one
	ServerPID      int    // a running server's pid, to report its CPU and RSS
	DataDir        string
	Command        func(dataDir, mqttAddr, httpAddr string) *exec.Cmd
	StartTimeout   time.Duration // for the child's first start [3 min]

	// Ramp raises the rate step by step (the interval shrinks by
	// RampFactor every RampStep) until the p99 latency passes MaxP99 or
	// the stored rate falls below 95 % of the offered one, and reports the
	// last step that held (the knee).
	Ramp       bool
	RampStep   time.Duration // [10 s]
	RampFactor float64       // [1.5]
	MaxP99     time.Duration // [100 ms]
	RampSteps  int           // at most [12]

	DrainTimeout time.Duration // wait for outstanding PUBACKs at the end [60 s]
	Log          io.Writer     // progress (default: discarded)
	ServerLog    io.Writer     // the child's output (default: discarded)
}

func (o *Options) defaults() {
	if o.Devices <= 0 {
		o.Devices = 100
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Prefix == "" {
		o.Prefix = "bench"
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 3 * time.Minute
	}
	if o.RampStep <= 0 {
		o.RampStep = 10 * time.Second
	}
	if o.RampFactor <= 1 {
		o.RampFactor = 1.5
	}
	if o.MaxP99 <= 0 {
		o.MaxP99 = 100 * time.Millisecond
	}
	if o.RampSteps <= 0 {
		o.RampSteps = 12
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 60 * time.Second
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
}

// Report is the outcome of a fleet run. The JSON names are a scripting
// interface: keep them.
type Report struct {
	Devices    int     `json:"devices"`
	IntervalMS float64 `json:"interval_ms"`
	Batch      int     `json:"batch"`
	DutyCycled bool    `json:"duty_cycled"`
	DurationS  float64 `json:"duration_s"`
	// WarmupS is how long it took until every device's first reading was
	// acknowledged, after all had connected (not part of the run).
	WarmupS float64 `json:"warmup_s"`

	TargetPerSecond   float64 `json:"target_readings_per_second"`
	ReadingsPerSecond float64 `json:"readings_per_second"` // acknowledged (= stored) readings per second of the run
	ReadingsSent      uint64  `json:"readings_sent"`
	ReadingsAcked     uint64  `json:"readings_acknowledged"`
	ReadingsStored    uint64  `json:"readings_stored"`
	ReadingsLost      uint64  `json:"readings_lost"`
	ReadingsUnacked   uint64  `json:"readings_unacknowledged"` // still held when the drain timed out
	ReadingsRefused   uint64  `json:"readings_refused_retried"`
	ReadingsDead      uint64  `json:"readings_dead_lettered"`
	ReadingsResent    uint64  `json:"readings_resent"`
	StoredUnacked     uint64  `json:"readings_stored_unacknowledged"`
	Messages          uint64  `json:"messages_sent"`
	LateTicks         uint64  `json:"late_ticks"` // readings not taken because a device's publisher was behind
	Connects          uint64  `json:"connects"`   // CONNECTs sent (including the first ones)
	Gaps              []Gap   `json:"gaps,omitempty"`

	LatencyP50MS float64 `json:"latency_p50_ms"`
	LatencyP99MS float64 `json:"latency_p99_ms"`
	LatencyMaxMS float64 `json:"latency_max_ms"`

	ServerCPUPercent float64 `json:"server_cpu_percent"` // of one core, over the run
	ServerRSSBytes   int64   `json:"server_rss_bytes"`
	ServerPeakRSS    int64   `json:"server_peak_rss_bytes"`
	GeneratorCPU     float64 `json:"generator_cpu_percent"`
	GeneratorRSS     int64   `json:"generator_rss_bytes"`

	Ramp []RampStep `json:"ramp,omitempty"`
	Knee *RampStep  `json:"knee,omitempty"`
}

// RampStep is one step of a ramp.
type RampStep struct {
	TargetPerSecond   float64 `json:"target_readings_per_second"`
	ReadingsPerSecond float64 `json:"readings_per_second"`
	LatencyP99MS      float64 `json:"latency_p99_ms"`
	ServerCPUPercent  float64 `json:"server_cpu_percent"`
	Held              bool    `json:"held"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// env is a server under test and the way to read it.
type env struct {
	broker string
	api    *API
	child  *Child
	pid    int
	dir    string
	tmp    string
}

func (e *env) proc() (ProcStat, bool) {
	pid := e.pid
	if e.child != nil {
		pid = e.child.PID()
	}
	if pid == 0 {
		return ProcStat{}, false
	}
	s, err := ReadProc(pid)
	return s, err == nil
}

func (e *env) close() {
	if e.child != nil {
		e.child.Stop()
	}
	if e.tmp != "" {
		os.RemoveAll(e.tmp)
	}
}

// setup registers the devices and starts a child server when needed.
func setup(ctx context.Context, o *Options, extra int) (*env, []Credential, error) {
	e := &env{broker: o.Broker, api: &API{Base: o.Server, Token: o.Token}, pid: o.ServerPID, dir: o.DataDir}
	external := o.Broker != "" || o.Server != ""
	if external && (o.Broker == "" || o.Server == "" || o.DataDir == "") {
		return nil, nil, errors.New("bench: a running server needs --broker, --server and --data (its data directory, to register devices)")
	}
	if !external && o.Command == nil {
		return nil, nil, errors.New("bench: no server command")
	}
	if e.dir == "" {
		tmp, err := os.MkdirTemp("", "loadwatch-bench-")
		if err != nil {
			return nil, nil, fmt.Errorf("bench: %w", err)
		}
		e.dir, e.tmp = tmp, tmp
	}
	start := time.Now()
	creds, err := Register(ctx, e.dir, o.Prefix, o.Devices+extra)
	if err != nil {
		e.close()
		return nil, nil, err
	}
	fmt.Fprintf(o.Log, "bench: registered %d devices in %v\n", len(creds), time.Since(start).Round(time.Millisecond))
	if !external {
		c, err := NewChild(ChildConfig{Command: o.Command, DataDir: e.dir, Log: o.ServerLog})
		if err != nil {
			e.close()
			return nil, nil, err
		}
		start := time.Now()
		if err := c.Start(ctx, o.StartTimeout); err != nil {
			e.close()
			return nil, nil, err
		}
		e.child, e.broker, e.api.Base = c, c.MQTTAddr(), c.URL()
		fmt.Fprintf(o.Log, "bench: server pid %d ready in %v (mqtt %s, http %s)\n", c.PID(), time.Since(start).Round(time.Millisecond), c.MQTTAddr(), c.URL())
	}
	return e, creds, nil
}

// RunFleet runs a fleet against a server and reports.
func RunFleet(ctx context.Context, o Options) (Report, error) {
	o.defaults()
	e, creds, err := setup(ctx, &o, 0)
	if err != nil {
		return Report{}, err
	}
	defer e.close()
	f, err := NewFleet(FleetConfig{Devices: creds, Interval: o.Interval, Batch: o.Batch, DutyCycled: o.DutyCycled,
		Window: o.Window, Broker: e.broker, Seed: o.Seed, Log: o.Log})
	if err != nil {
		return Report{}, err
	}
	defer f.Close()
	if err := f.Connect(ctx); err != nil {
		return Report{}, err
	}
	wu, err := f.Warmup(ctx, 5*time.Minute)
	if err != nil {
		return Report{}, err
	}
	fmt.Fprintf(o.Log, "bench: warm-up: every device's first reading acknowledged after %v\n", wu.Round(time.Millisecond))
	rep := Report{WarmupS: wu.Seconds(), Devices: o.Devices, IntervalMS: ms(o.Interval), Batch: max(o.Batch, 1), DutyCycled: o.DutyCycled,
		TargetPerSecond: float64(o.Devices) / o.Interval.Seconds()}

	p0, _ := e.proc()
	g0, _ := ReadProc(os.Getpid())
	a0 := f.Stats().ReadingsAcked
	t0 := time.Now()
	f.Start(ctx)
	if o.Ramp {
		rep.Ramp, rep.Knee = ramp(ctx, f, e, &o)
	} else {
		select {
		case <-time.After(o.Duration):
		case <-ctx.Done():
		}
	}
	f.Stop()
	el := time.Since(t0)
	st := f.Stats()
	rep.DurationS = el.Seconds()
	rep.ReadingsPerSecond = float64(st.ReadingsAcked-a0) / el.Seconds()
	if p1, ok := e.proc(); ok {
		rep.ServerCPUPercent = 100 * (p1.CPU - p0.CPU).Seconds() / el.Seconds()
		rep.ServerRSSBytes, rep.ServerPeakRSS = p1.RSS, p1.PeakRSS
	}
	if g1, err := ReadProc(os.Getpid()); err == nil {
		rep.GeneratorCPU = 100 * (g1.CPU - g0.CPU).Seconds() / el.Seconds()
		rep.GeneratorRSS = g1.RSS
	}
	lat := f.Latency()
	rep.LatencyP50MS, rep.LatencyP99MS, rep.LatencyMaxMS = ms(lat.Quantile(.5)), ms(lat.Quantile(.99)), ms(lat.Max())
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}
	fmt.Fprintf(o.Log, "bench: run ended after %v; draining\n", el.Round(time.Millisecond))
	derr := f.Drain(ctx, o.DrainTimeout)
	if derr != nil {
		fmt.Fprintf(o.Log, "%v\n", derr)
	}
	if err := fill(ctx, &rep, f, e.api); err != nil {
		return rep, err
	}
	return rep, nil
}

// fill adds the fleet's final counters and the reconciliation to rep.
func fill(ctx context.Context, rep *Report, f *Fleet, api *API) error {
	st := f.Stats()
	rep.ReadingsSent, rep.ReadingsAcked, rep.ReadingsRefused = st.ReadingsSent, st.ReadingsAcked, st.ReadingsRefused
	rep.ReadingsDead, rep.ReadingsResent, rep.Messages, rep.LateTicks = st.ReadingsDeadLettered, st.ReadingsResent, st.Messages, st.LateTicks
	rep.ReadingsUnacked = uint64(f.Held())
	rep.Connects = st.Dials
	rc, err := f.Reconcile(ctx, api)
	if err != nil {
		return err
	}
	rep.ReadingsStored, rep.ReadingsLost, rep.StoredUnacked, rep.Gaps = rc.Stored, rc.Lost, rc.StoredUnacked, rc.Gaps
	return nil
}

func ramp(ctx context.Context, f *Fleet, e *env, o *Options) ([]RampStep, *RampStep) {
	var steps []RampStep
	var knee *RampStep
	iv := o.Interval
	for i := 0; i < o.RampSteps && ctx.Err() == nil; i++ {
		f.SetInterval(iv)
		f.Latency().Reset()
		a0 := f.Stats().ReadingsAcked
		p0, _ := e.proc()
		t0 := time.Now()
		select {
		case <-time.After(o.RampStep):
		case <-ctx.Done():
		}
		el := time.Since(t0)
		s := RampStep{
			TargetPerSecond:   float64(len(f.devs)) / iv.Seconds(),
			ReadingsPerSecond: float64(f.Stats().ReadingsAcked-a0) / el.Seconds(),
			LatencyP99MS:      ms(f.Latency().Quantile(.99)),
		}
		if p1, ok := e.proc(); ok {
			s.ServerCPUPercent = 100 * (p1.CPU - p0.CPU).Seconds() / el.Seconds()
		}
		s.Held = s.LatencyP99MS <= ms(o.MaxP99) && s.ReadingsPerSecond >= 0.95*s.TargetPerSecond
		steps = append(steps, s)
		fmt.Fprintf(o.Log, "bench: ramp %.0f/s offered, %.0f/s stored, p99 %.1f ms, server CPU %.0f %%, held %v\n",
			s.TargetPerSecond, s.ReadingsPerSecond, s.LatencyP99MS, s.ServerCPUPercent, s.Held)
		if !s.Held {
			break
		}
		k := s
		knee = &k
		iv = time.Duration(float64(iv) / o.RampFactor)
		if iv < time.Millisecond {
			break
		}
	}
	return steps, knee
}
