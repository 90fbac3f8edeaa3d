package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"loadwatch/internal/forest"
	"loadwatch/internal/loadsim"
	"loadwatch/internal/server"
	"loadwatch/internal/store"
)

// RetentionOptions configures RunRetention. Zero fields mean the
// documented defaults.
type RetentionOptions struct {
	Devices  int           // [100]
	Hours    float64       // of history backfilled before the server starts (0: none)
	Interval time.Duration // between two readings of one device, history and live [5 s]
	Live     time.Duration // of the live fleet after the server started [60 s]
	Seed     int64         // [1]
	Prefix   string        // device ids <prefix>-<n> ["bench"]
	// Model classifies the history (and is written as the server's
	// model.json, so the server classifies the live readings with it);
	// nil: neither classifies (Command must then run the server with
	// --no-model).
	Model *forest.Model
	// Schedule of the history's circuits [loadsim.ReferenceDay].
	Schedule *loadsim.Schedule
	// DataDir is the server's data directory (created; it should be
	// empty). Default: a temporary directory, removed after.
	DataDir string
	// Command runs the server (see ServeCommand).
	Command      func(dataDir, mqttAddr, httpAddr string) *exec.Cmd
	StartTimeout time.Duration // [3 min]
	// CheckDevices is how many devices' backfilled series are read back
	// through the query API and compared sample count by sample count with
	// what was written [2: the first and the last].
	CheckDevices int
	// ChartWidth is the dashboard chart's width in pixels: the range
	// queries' step is 24 h / ChartWidth, as device.js computes it [1200].
	ChartWidth int
	// Settle is the wait between the queries and the memory reading [2 s].
	Settle    time.Duration
	Log       io.Writer // progress (default: discarded)
	ServerLog io.Writer // the child's output (default: discarded)
}

func (o *RetentionOptions) defaults() {
	if o.Devices <= 0 {
		o.Devices = 100
	}
	if o.Interval <= 0 {
		o.Interval = 5 * time.Second
	}
	if o.Live <= 0 {
		o.Live = time.Minute
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Prefix == "" {
		o.Prefix = "bench"
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 3 * time.Minute
	}
	if o.CheckDevices <= 0 {
		o.CheckDevices = 2
	}
	if o.ChartWidth <= 0 {
		o.ChartWidth = 1200
	}
	if o.Settle <= 0 {
		o.Settle = 2 * time.Second
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
}

// RetentionReport is the outcome of RunRetention. The JSON names are a
// scripting interface: keep them.
type RetentionReport struct {
	Devices    int     `json:"devices"`
	Hours      float64 `json:"hours"`
	IntervalS  float64 `json:"interval_s"`
	LiveS      float64 `json:"live_s"`
	Classified bool    `json:"classified"`
	Date       string  `json:"date"`
	LoadAvg    string  `json:"load_average"` // /proc/loadavg at the end

	// History (backfill).
	BackfillS           float64 `json:"backfill_s"`
	BackfillReadings    uint64  `json:"backfill_readings"`
	BackfillSamples     uint64  `json:"backfill_samples"`
	SamplesPerReading   float64 `json:"samples_per_reading"`
	BackfillBlockSeries uint64  `json:"backfill_block_series"` // summed over blocks
	// Read back through the query API for CheckDevices devices.
	CheckedDevices   int    `json:"checked_devices"`
	CheckedSeries    int    `json:"checked_series"`
	CheckedSamples   uint64 `json:"checked_samples"`
	CheckMismatches  int    `json:"check_mismatches"`
	CheckMismatchOne string `json:"check_first_mismatch,omitempty"`

	// Server.
	ServerStartS  float64            `json:"server_start_s"`
	LiveReadings  uint64             `json:"live_readings_acknowledged"`
	LiveSamples   uint64             `json:"live_samples"` // in the head, from the query API
	HeadSeries    int                `json:"head_series"`  // series with samples in the live period (the head's)
	ServerCPULive float64            `json:"server_cpu_percent_live"`
	QueryMS       map[string]float64 `json:"query_ms"`
	QueryCPUS     float64            `json:"query_cpu_s"` // server CPU time spent on the queries

	// AnonBaseline is RssAnon of the same server on an empty data
	// directory, right after start: the part that does not grow with
	// devices or retention.
	AnonBaseline int64 `json:"rss_anon_empty_server_bytes"`
	RSSBaseline  int64 `json:"rss_empty_server_bytes"`
	// Memory after the queries (bytes). RSS = anon + file + shmem.
	RSSIdle  int64 `json:"rss_after_start_bytes"` // VmRSS after the server opened the store, before the fleet
	AnonIdle int64 `json:"rss_anon_after_start_bytes"`
	RSS      int64 `json:"rss_bytes"`
	RSSAnon  int64 `json:"rss_anon_bytes"`
	RSSFile  int64 `json:"rss_file_bytes"`
	RSSShmem int64 `json:"rss_shmem_bytes"`
	// RSSFileStore is the part of RSSFile mapped from the store's files
	// (block index and chunks, head chunks), from /proc/PID/smaps; the
	// rest is the executable's pages.
	RSSFileStore int64     `json:"rss_file_store_bytes"`
	StoreMaps    storeMaps `json:"rss_file_store"`
	// The same before the dashboard's queries (after the live fleet).
	RSSBeforeQueries     int64     `json:"rss_before_queries_bytes"`
	AnonBeforeQueries    int64     `json:"rss_anon_before_queries_bytes"`
	StoreMapsAfterStart  storeMaps `json:"rss_file_store_after_start"`
	StoreMapsBeforeQuery storeMaps `json:"rss_file_store_before_queries"`
	PeakRSS              int64     `json:"peak_rss_bytes"`
	HeapInuse            int64     `json:"go_heap_inuse_bytes"`
	GoSys                int64     `json:"go_sys_bytes"`
	Goroutines           int64     `json:"goroutines"`

	// Disk.
	Blocks         int   `json:"blocks"`
	BlockBytes     int64 `json:"block_bytes"`
	IndexBytes     int64 `json:"block_index_bytes"` // of BlockBytes
	WALBytes       int64 `json:"wal_bytes"`
	HeadChunkBytes int64 `json:"head_chunk_bytes"`
	StoreBytes     int64 `json:"store_bytes"`

	// Derived.
	SamplesStored           uint64  `json:"samples_stored"`
	DiskBytesPerSample      float64 `json:"disk_bytes_per_sample"`             // block bytes / block samples
	AnonBytesPerHeadSeries  float64 `json:"anon_bytes_per_head_series"`        // RssAnon / head series (includes the fixed part)
	ResidentBytesPerSample  float64 `json:"resident_bytes_per_sample"`         // RSS / samples stored
	FileBytesPerBlockSample float64 `json:"store_file_bytes_per_block_sample"` // RSSFileStore / block samples
	// Extrapolation to 10,000 devices with 24 h of 5 s data (see
	// Extrapolate).
	Extrapolated Extrapolation `json:"extrapolated"`
}

// Extrapolation is a run's figures scaled to another fleet and retention.
type Extrapolation struct {
	Devices   int     `json:"devices"`
	Hours     float64 `json:"hours"`
	IntervalS float64 `json:"interval_s"`
	Samples   float64 `json:"samples"`
	Anon      float64 `json:"rss_anon_bytes"`
	File      float64 `json:"rss_file_bytes"`
	RSS       float64 `json:"rss_bytes"`
	Disk      float64 `json:"disk_bytes"`
	Formula   string  `json:"formula"`
}

// Extrapolate scales a run to devices x hours at interval: anonymous
// memory above an empty server's (head series, per-device ingest state,
// per-block index tables, garbage the GC has not yet freed) with the
// devices, and not with the hours (the run should have the target's
// retention); the
// store's mapped pages (block index and chunks the queries touched) and
// disk with the stored samples; the executable's pages stay as they are.
func (r *RetentionReport) Extrapolate(devices int, hours float64, interval time.Duration) Extrapolation {
	e := Extrapolation{Devices: devices, Hours: hours, IntervalS: interval.Seconds(),
		Formula: "S' = D' x hours' x 3600 / interval' x samples_per_reading; anon' = anon_empty + (rss_anon - anon_empty) x D'/D; " +
			"file' = (rss_file - rss_file_store) + rss_file_store x S'/S_blocks; disk' = disk_bytes_per_sample x S'"}
	spr := r.SamplesPerReading
	if spr == 0 {
		spr = 7
	}
	e.Samples = float64(devices) * hours * 3600 / interval.Seconds() * spr
	if r.Devices > 0 {
		e.Anon = float64(r.AnonBaseline) + float64(r.RSSAnon-r.AnonBaseline)*float64(devices)/float64(r.Devices)
	}
	e.File = float64(r.RSSFile - r.RSSFileStore)
	if r.BackfillSamples > 0 {
		e.File += float64(r.RSSFileStore) * e.Samples / float64(r.BackfillSamples)
	}
	e.RSS = e.Anon + e.File + float64(r.RSSShmem)
	e.Disk = r.DiskBytesPerSample * e.Samples
	return e
}

// RunRetention backfills Hours of history for Devices into a fresh data
// directory, starts the server on it in a child process, runs a live fleet
// of the same devices for Live, runs the dashboard's queries, and reports
// the server's memory, its store on disk and the derived figures; then it
// reads the backfilled series of CheckDevices devices back through the
// query API and compares them with what was written.
func RunRetention(ctx context.Context, o RetentionOptions) (RetentionReport, error) {
	o.defaults()
	rep := RetentionReport{Devices: o.Devices, Hours: o.Hours, IntervalS: o.Interval.Seconds(), LiveS: o.Live.Seconds(),
		Classified: o.Model != nil, Date: time.Now().UTC().Format(time.RFC3339), QueryMS: map[string]float64{}}
	if o.Command == nil {
		return rep, errors.New("bench: no server command")
	}
	if o.Hours < 0 || math.IsNaN(o.Hours) || math.IsInf(o.Hours, 0) {
		return rep, fmt.Errorf("bench: hours %v must be 0 or more", o.Hours)
	}
	dir := o.DataDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "loadwatch-retention-")
		if err != nil {
			return rep, fmt.Errorf("bench: %w", err)
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return rep, fmt.Errorf("bench: %w", err)
	}
	storeDir := filepath.Join(dir, server.StoreDir)
	if o.Model != nil {
		if err := server.WriteModel(filepath.Join(dir, server.ModelFile), o.Model); err != nil {
			return rep, fmt.Errorf("bench: %w", err)
		}
	}
	ids := make([]string, o.Devices)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%05d", o.Prefix, i)
	}
	check := checkDevices(ids, o.CheckDevices)

	// 1. History.
	var hist *History
	var from, to time.Time
	if o.Hours > 0 {
		var err error
		hist, err = NewHistory(HistoryConfig{Devices: ids, Interval: o.Interval, Seed: o.Seed, Schedule: o.Schedule, Model: o.Model, Check: check})
		if err != nil {
			return rep, err
		}
		to = time.Now().Truncate(time.Second)
		from = to.Add(-time.Duration(o.Hours * float64(time.Hour)))
		t0 := time.Now()
		st, err := store.Backfill(ctx, storeDir, from, to, hist.Window, store.BackfillOptions{Progress: func(p store.BackfillProgress) {
			fmt.Fprintf(o.Log, "bench: backfill block %d/%d (%s), %d samples, %v\n", p.Done, p.Windows,
				p.WindowFrom.UTC().Format("15:04"), p.Samples, time.Since(t0).Round(time.Second))
		}})
		if err != nil {
			return rep, err
		}
		rep.BackfillS = time.Since(t0).Seconds()
		rep.BackfillReadings, rep.BackfillSamples, rep.BackfillBlockSeries = hist.Readings(), st.Samples, st.Series
		if rep.BackfillReadings > 0 {
			rep.SamplesPerReading = float64(st.Samples) / float64(rep.BackfillReadings)
		}
		fmt.Fprintf(o.Log, "bench: backfilled %d readings, %d samples in %d blocks in %v\n", rep.BackfillReadings, st.Samples, st.Blocks, time.Since(t0).Round(time.Second))
	}

	// 2. Server: first on an empty directory, for the fixed part.
	if err := baseline(ctx, &o, &rep); err != nil {
		return rep, err
	}
	creds, err := Register(ctx, dir, o.Prefix, o.Devices)
	if err != nil {
		return rep, err
	}
	child, err := NewChild(ChildConfig{Command: o.Command, DataDir: dir, Log: o.ServerLog})
	if err != nil {
		return rep, err
	}
	t0 := time.Now()
	if err := child.Start(ctx, o.StartTimeout); err != nil {
		return rep, err
	}
	defer child.Stop()
	rep.ServerStartS = time.Since(t0).Seconds()
	pid := child.PID()
	if m, err := readMem(pid); err == nil {
		rep.RSSIdle, rep.AnonIdle = m.rss, m.anon
	}
	rep.StoreMapsAfterStart = readStoreMaps(pid, storeDir)
	fmt.Fprintf(o.Log, "bench: server pid %d ready in %v, RSS %.0f MiB\n", pid, time.Since(t0).Round(time.Millisecond), float64(rep.RSSIdle)/(1<<20))
	api := &API{Base: child.URL()}

	// 3. Live fleet.
	f, err := NewFleet(FleetConfig{Devices: creds, Interval: o.Interval, Broker: child.MQTTAddr(), Seed: o.Seed, Log: o.Log})
	if err != nil {
		return rep, err
	}
	defer f.Close()
	if err := f.Connect(ctx); err != nil {
		return rep, err
	}
	liveStart := time.Now()
	if _, err := f.Warmup(ctx, 5*time.Minute); err != nil {
		return rep, err
	}
	p0, _ := ReadProc(pid)
	lt0 := time.Now()
	f.Start(ctx)
	select {
	case <-time.After(o.Live):
	case <-ctx.Done():
	}
	f.Stop()
	if err := f.Drain(ctx, time.Minute); err != nil {
		fmt.Fprintln(o.Log, err)
	}
	if p1, err := ReadProc(pid); err == nil {
		rep.ServerCPULive = 100 * (p1.CPU - p0.CPU).Seconds() / time.Since(lt0).Seconds()
	}
	rep.LiveReadings = f.Stats().ReadingsAcked
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}
	fmt.Fprintf(o.Log, "bench: live fleet: %d readings acknowledged in %v\n", rep.LiveReadings, time.Since(liveStart).Round(time.Second))

	// 4. The dashboard's queries.
	if m, err := readMem(pid); err == nil {
		rep.RSSBeforeQueries, rep.AnonBeforeQueries = m.rss, m.anon
	}
	rep.StoreMapsBeforeQuery = readStoreMaps(pid, storeDir)
	q0, _ := ReadProc(pid)
	if err := dashboardQueries(ctx, api, ids[0], o.ChartWidth, rep.QueryMS); err != nil {
		return rep, err
	}
	if q1, err := ReadProc(pid); err == nil {
		rep.QueryCPUS = (q1.CPU - q0.CPU).Seconds()
	}
	select {
	case <-time.After(o.Settle):
	case <-ctx.Done():
		return rep, ctx.Err()
	}

	// 5. Memory, then what the store holds (these queries come after the
	// memory reading so they do not count in it).
	m, err := readMem(pid)
	if err != nil {
		return rep, err
	}
	rep.RSS, rep.RSSAnon, rep.RSSFile, rep.RSSShmem, rep.PeakRSS = m.rss, m.anon, m.file, m.shmem, m.peak
	rep.StoreMaps = readStoreMaps(pid, storeDir)
	rep.RSSFileStore = rep.StoreMaps.total()
	met, err := api.Metrics(ctx)
	if err != nil {
		return rep, err
	}
	rep.HeapInuse, rep.GoSys, rep.Goroutines = int64(met["go_memstats_heap_inuse_bytes"]), int64(met["go_memstats_sys_bytes"]), int64(met["go_goroutines"])
	now := time.Now()
	if rep.HeadSeries, err = api.countSeries(ctx, liveStart, now); err != nil {
		return rep, err
	}
	rep.LiveSamples, err = api.countSamples(ctx, now, now.Sub(liveStart)+time.Second)
	if err != nil {
		return rep, err
	}
	if err := diskUsage(storeDir, &rep); err != nil {
		return rep, err
	}
	if hist != nil {
		if err := verify(ctx, api, hist, from, to, &rep); err != nil {
			return rep, err
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		rep.LoadAvg = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	derive(&rep)
	return rep, nil
}

// baseline starts the server on an empty data directory and reads its
// memory once it answers.
func baseline(ctx context.Context, o *RetentionOptions, rep *RetentionReport) error {
	dir, err := os.MkdirTemp("", "loadwatch-empty-")
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(dir)
	if o.Model != nil {
		if err := server.WriteModel(filepath.Join(dir, server.ModelFile), o.Model); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	c, err := NewChild(ChildConfig{Command: o.Command, DataDir: dir, Log: o.ServerLog})
	if err != nil {
		return err
	}
	if err := c.Start(ctx, o.StartTimeout); err != nil {
		return err
	}
	defer c.Stop()
	select {
	case <-time.After(o.Settle):
	case <-ctx.Done():
		return ctx.Err()
	}
	m, err := readMem(c.PID())
	if err != nil {
		return err
	}
	rep.AnonBaseline, rep.RSSBaseline = m.anon, m.rss
	return nil
}

func checkDevices(ids []string, n int) []string {
	if n >= len(ids) {
		return ids
	}
	out := []string{ids[0]}
	for i := 1; i < n; i++ {
		out = append(out, ids[(len(ids)-1)*i/(n-1)])
	}
	return out
}

// dashboardQueries runs what the device page asks for a 24 h window and
// what the fleet page asks (the devices list), through the API the
// dashboard's /ui/api/v1/ forwards to.
func dashboardQueries(ctx context.Context, api *API, dev string, width int, out map[string]float64) error {
	end := time.Now()
	start := end.Add(-24 * time.Hour)
	step := int(math.Ceil(24 * 3600 / float64(width)))
	sel := fmt.Sprintf(`{device=%q}`, dev)
	type named struct{ name, q string }
	var qs []named
	for _, m := range []string{store.MetricPower, store.MetricVoltage, store.MetricCurrent, store.MetricPowerFactor, store.MetricFrequency} {
		q := fmt.Sprintf("avg_over_time(%s%s[%ds])", m, sel, step)
		if step < 60 {
			q = m + sel
		}
		qs = append(qs, named{strings.TrimPrefix(m, "loadwatch_"), q})
	}
	qs = append(qs, named{"class_band", "timestamp(" + store.MetricClassConfidence + sel + ")"},
		named{"events", fmt.Sprintf("count_over_time(%s%s[%ds])", store.MetricEvents, sel, step)})
	for _, q := range qs {
		v := url.Values{"query": {q.q}, "start": {fmtSec(start)}, "end": {fmtSec(end)}, "step": {strconv.Itoa(step)}}
		t0 := time.Now()
		if _, err := api.get(ctx, "/api/v1/query_range", v); err != nil {
			return err
		}
		out["device_24h_"+q.name] = ms(time.Since(t0))
	}
	for _, p := range []string{"/api/v1/devices", "/api/v1/devices/" + url.PathEscape(dev)} {
		t0 := time.Now()
		if _, err := api.get(ctx, p, nil); err != nil {
			return err
		}
		name := "fleet_devices"
		if strings.Count(p, "/") > 3 {
			name = "device_info"
		}
		out[name] = ms(time.Since(t0))
	}
	return nil
}

func fmtSec(t time.Time) string { return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64) }

// countSeries counts the loadwatch series with samples in [from, to]
// (/api/v1/series).
func (a *API) countSeries(ctx context.Context, from, to time.Time) (int, error) {
	v := url.Values{"match[]": {`{__name__=~"loadwatch_.+"}`}, "start": {fmtSec(from)}, "end": {fmtSec(to)}}
	b, err := a.get(ctx, "/api/v1/series", v)
	if err != nil {
		return 0, err
	}
	// Each series is one JSON object with a __name__.
	return bytes.Count(b, []byte(`"__name__"`)), nil
}

// countSamples sums count_over_time of every loadwatch series over the
// range before t (one query per family: count_over_time drops the metric
// name, so families would collide in one vector).
func (a *API) countSamples(ctx context.Context, t time.Time, rng time.Duration) (uint64, error) {
	var n uint64
	for _, m := range store.Metrics {
		res, err := a.Query(ctx, fmt.Sprintf(`sum(count_over_time(%s[%s]))`, m.Name, strconvMS(rng.Milliseconds())), t)
		if err != nil {
			return 0, err
		}
		if len(res) > 0 && len(res[0].Samples) > 0 {
			n += uint64(res[0].Samples[0].V)
		}
	}
	return n, nil
}

// verify reads the checked devices' backfilled series back as raw samples
// and compares their counts with what the history appended.
func verify(ctx context.Context, api *API, h *History, from, to time.Time, rep *RetentionReport) error {
	want := h.Counts()
	rng := strconvMS(to.Sub(from).Milliseconds())
	at := to.Add(-time.Millisecond)
	for dev, ws := range want {
		res, err := api.Query(ctx, fmt.Sprintf(`{device=%q}[%s]`, dev, rng), at)
		if err != nil {
			return err
		}
		got := map[string]uint64{}
		for _, s := range res {
			got[SeriesKey(s.Labels["__name__"], s.Labels)] = uint64(len(s.Samples))
		}
		rep.CheckedDevices++
		for k, n := range ws {
			rep.CheckedSeries++
			rep.CheckedSamples += got[k]
			if got[k] != n {
				rep.CheckMismatches++
				if rep.CheckMismatchOne == "" {
					rep.CheckMismatchOne = fmt.Sprintf("%s: %d written, %d read back", k, n, got[k])
				}
			}
			delete(got, k)
		}
		for k, n := range got {
			rep.CheckMismatches++
			if rep.CheckMismatchOne == "" {
				rep.CheckMismatchOne = fmt.Sprintf("%s: not written, %d read back", k, n)
			}
		}
	}
	return nil
}

func diskUsage(dir string, rep *RetentionReport) error {
	blocks, err := store.Blocks(dir)
	if err != nil {
		return err
	}
	var samples uint64
	for _, b := range blocks {
		rep.BlockBytes += b.Bytes
		rep.IndexBytes += b.IndexBytes
		samples += b.Samples
	}
	rep.Blocks = len(blocks)
	rep.WALBytes, _ = store.DirBytes(filepath.Join(dir, "wal"))
	rep.HeadChunkBytes, _ = store.DirBytes(filepath.Join(dir, "chunks_head"))
	rep.StoreBytes, _ = store.DirBytes(dir)
	if samples > 0 {
		rep.DiskBytesPerSample = float64(rep.BlockBytes) / float64(samples)
	}
	return nil
}

func derive(rep *RetentionReport) {
	rep.SamplesStored = rep.BackfillSamples + rep.LiveSamples
	if rep.HeadSeries > 0 {
		rep.AnonBytesPerHeadSeries = float64(rep.RSSAnon) / float64(rep.HeadSeries)
	}
	if rep.SamplesStored > 0 {
		rep.ResidentBytesPerSample = float64(rep.RSS) / float64(rep.SamplesStored)
	}
	if rep.BackfillSamples > 0 {
		rep.FileBytesPerBlockSample = float64(rep.RSSFile) / float64(rep.BackfillSamples)
	}
	if rep.SamplesPerReading == 0 && rep.LiveReadings > 0 {
		rep.SamplesPerReading = float64(rep.LiveSamples) / float64(rep.LiveReadings)
	}
	rep.Extrapolated = rep.Extrapolate(10000, 24, 5*time.Second)
}

// storeMaps is the resident size of a process's mappings of store files,
// by kind, from /proc/PID/smaps.
type storeMaps struct {
	Index      int64 `json:"index_bytes"`       // block index files
	Chunks     int64 `json:"chunks_bytes"`      // block chunk segments
	HeadChunks int64 `json:"head_chunks_bytes"` // the head's mmapped chunks (chunks_head)
	Other      int64 `json:"other_bytes"`
}

func (m storeMaps) total() int64 { return m.Index + m.Chunks + m.HeadChunks + m.Other }

// smapsRss sums the Rss of the mappings of files under prefix, by kind.
func smapsRss(b []byte, prefix string) storeMaps {
	var m storeMaps
	var dst *int64
	for line := range bytes.SplitSeq(b, []byte{'\n'}) {
		f := bytes.Fields(line)
		if len(f) == 0 {
			continue
		}
		if !bytes.HasSuffix(f[0], []byte{':'}) { // a mapping's header: addr perms offset dev inode [path]
			dst = nil
			if len(f) >= 6 && strings.HasPrefix(string(f[5]), prefix) {
				rel := string(f[5][len(prefix):])
				switch {
				case strings.HasPrefix(rel, "chunks_head/"):
					dst = &m.HeadChunks
				case strings.HasSuffix(rel, "/index"):
					dst = &m.Index
				case strings.Contains(rel, "/chunks/"):
					dst = &m.Chunks
				default:
					dst = &m.Other
				}
			}
			continue
		}
		if dst != nil && string(f[0]) == "Rss:" && len(f) >= 2 {
			if v, err := strconv.ParseUint(string(f[1]), 10, 40); err == nil {
				*dst += int64(v) << 10
			}
		}
	}
	return m
}

func readStoreMaps(pid int, storeDir string) storeMaps {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return storeMaps{}
	}
	abs, _ := filepath.Abs(storeDir)
	return smapsRss(b, abs+string(filepath.Separator))
}

// mem is a process's resident memory from /proc/PID/status, in bytes.
type mem struct{ rss, anon, file, shmem, peak int64 }

func readMem(pid int) (mem, error) {
	var m mem
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, fmt.Errorf("bench: %w", err)
	}
	m = parseStatus(b)
	if m.rss == 0 {
		return m, fmt.Errorf("bench: /proc/%d/status: no VmRSS", pid)
	}
	return m, nil
}

func parseStatus(b []byte) mem {
	var m mem
	for line := range bytes.SplitSeq(b, []byte{'\n'}) {
		name, rest, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		var dst *int64
		switch string(name) {
		case "VmRSS":
			dst = &m.rss
		case "RssAnon":
			dst = &m.anon
		case "RssFile":
			dst = &m.file
		case "RssShmem":
			dst = &m.shmem
		case "VmHWM":
			dst = &m.peak
		default:
			continue
		}
		if fs := bytes.Fields(rest); len(fs) >= 1 {
			if v, err := strconv.ParseUint(string(fs[0]), 10, 40); err == nil {
				*dst = int64(v) << 10
			}
		}
	}
	return m
}
