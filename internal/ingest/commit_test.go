package ingest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"loadwatch/internal/store"
	"loadwatch/internal/telemetry"
)

// gateStore holds the first Append it gets (once armed) until released, so
// that a test can let messages queue up behind it and be appended together.
type gateStore struct {
	Store
	mu      sync.Mutex
	armed   bool
	entered chan struct{}
	release chan struct{}
	sizes   []int // samples per Append call
}

func newGate(s Store) *gateStore {
	return &gateStore{Store: s, entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gateStore) arm() { g.mu.Lock(); g.armed = true; g.mu.Unlock() }

func (g *gateStore) Append(ctx context.Context, b []store.Sample) error {
	g.mu.Lock()
	g.sizes = append(g.sizes, len(b))
	hold := g.armed
	g.armed = false
	g.mu.Unlock()
	if hold {
		close(g.entered)
		<-g.release
	}
	return g.Store.Append(ctx, b)
}

// waitQueued waits until n messages wait behind the running append.
func waitQueued(t *testing.T, p *Pipeline, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		p.commit.mu.Lock()
		q := len(p.commit.queue)
		p.commit.mu.Unlock()
		if q == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages queued, want %d", q, n)
		}
		time.Sleep(time.Millisecond)
	}
}

type ingestResult struct {
	code byte
	err  error
}

// ingestAsync runs one Ingest in a goroutine.
func ingestAsync(ctx context.Context, p *Pipeline, dev string, msg []byte) <-chan ingestResult {
	ch := make(chan ingestResult, 1)
	go func() {
		c, err := p.Ingest(ctx, dev, telemetry.Topic(dev, telemetry.ChannelTelemetry), msg)
		ch <- ingestResult{c, err}
	}()
	return ch
}

// recStore records every sample appended, to check that each is appended
// exactly once.
type recStore struct {
	mu   sync.Mutex
	seen map[string]int // device/metric/t -> times appended
}

func (r *recStore) Append(_ context.Context, b []store.Sample) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]int{}
	}
	for _, s := range b {
		r.seen[fmt.Sprintf("%s/%s/%d", s.Labels[0].Value, s.Metric, s.T)]++
	}
	return nil
}

// TestGroupCommitManyDevices: 100 devices' messages that queue behind one
// running append are appended together in one Store.Append, then every
// device keeps publishing concurrently; every reading is appended exactly
// once and acknowledged.
func TestGroupCommitManyDevices(t *testing.T) {
	rec := &recStore{}
	g := newGate(rec)
	p, _ := New(Config{Store: g, Classifier: fixedModel{testModel(t)}, Now: func() time.Time { return t0.Add(time.Hour) }})
	p.commit.parallel = 1 // one append at a time, so that messages queue behind the held one
	ctx := context.Background()
	g.arm()
	blocker := ingestAsync(ctx, p, "blocker", payload("e", 1, t0, "10"))
	<-g.entered
	const devices, perDevice = 100, 20
	var wg sync.WaitGroup
	errs := make(chan error, devices*perDevice)
	first := make([]<-chan ingestResult, devices)
	for i := range devices {
		first[i] = ingestAsync(ctx, p, fmt.Sprintf("d%d", i), payload("e", 1, t0, "100"))
	}
	waitQueued(t, p, devices)
	close(g.release)
	if r := <-blocker; r.code != 0 {
		t.Fatal(r.err)
	}
	for i := range devices {
		if r := <-first[i]; r.code != 0 {
			t.Fatalf("d%d: 0x%02x %v", i, r.code, r.err)
		}
	}
	if s := p.Stats(); s.Appends != 2 || s.AppendedMessages != devices+1 {
		t.Fatalf("after the gate: %d appends of %d messages, want 2 of %d", s.Appends, s.AppendedMessages, devices+1)
	}
	for i := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dev := fmt.Sprintf("d%d", i)
			for seq := uint64(2); seq <= perDevice; seq++ {
				c, err := p.Ingest(ctx, dev, telemetry.Topic(dev, telemetry.ChannelTelemetry), payload("e", seq, t0.Add(time.Duration(seq)*time.Second), "100"))
				if c != 0 {
					errs <- fmt.Errorf("%s seq %d: 0x%02x %w", dev, seq, c, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	s := p.Stats()
	if want := uint64(devices*perDevice + 1); s.Readings != want || s.AppendedMessages != want {
		t.Errorf("stats %+v, want %d readings in %d appended messages", s, want, want)
	}
	t.Logf("%d messages in %d appends", s.AppendedMessages, s.Appends)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for i := range devices {
		for seq := 1; seq <= perDevice; seq++ {
			ts := t0
			if seq > 1 {
				ts = t0.Add(time.Duration(seq) * time.Second)
			}
			for _, m := range []string{store.MetricPower, store.MetricVoltage, store.MetricEnergy, store.MetricClassConfidence} {
				if n := rec.seen[fmt.Sprintf("d%d/%s/%d", i, m, store.Millis(ts))]; n != 1 {
					t.Fatalf("d%d seq %d %s appended %d times, want once", i, seq, m, n)
				}
			}
		}
	}
}

// TestGroupCommitRefusalsStayWithTheirMessage: in one group appended to the
// real store, a conflicting reading (same time, another value) is
// acknowledged as a duplicate of its own device, a too-old reading refuses
// only its message, and the other devices' readings are stored.
func TestGroupCommitRefusalsStayWithTheirMessage(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	g := newGate(st)
	now := t0.Add(48 * time.Hour)
	p, _ := New(Config{Store: g, Now: func() time.Time { return now }})
	p.commit.parallel = 1 // one append at a time, so that messages queue behind the held one
	ctx := context.Background()
	ing := func(dev string, seq uint64, ts time.Time, pw string) ingestResult {
		c, err := p.Ingest(ctx, dev, telemetry.Topic(dev, telemetry.ChannelTelemetry), payload("e", seq, ts, pw))
		return ingestResult{c, err}
	}
	if r := ing("z", 1, now, "5"); r.code != 0 { // the store's newest sample
		t.Fatal(r.err)
	}
	if r := ing("a", 1, now.Add(-time.Hour), "100"); r.code != 0 {
		t.Fatal(r.err)
	}
	g.arm()
	blocker := ingestAsync(ctx, p, "blocker", payload("e", 1, now, "10"))
	<-g.entered
	conflict := ingestAsync(ctx, p, "a", payload("e", 2, now.Add(-time.Hour), "200"))
	tooOld := ingestAsync(ctx, p, "b", payload("e", 1, t0, "50"))
	var good []<-chan ingestResult
	for i := range 5 {
		good = append(good, ingestAsync(ctx, p, fmt.Sprintf("c%d", i), payload("e", 1, now.Add(-time.Second), "7")))
	}
	waitQueued(t, p, 7)
	close(g.release)
	if r := <-blocker; r.code != 0 {
		t.Fatal(r.err)
	}
	if r := <-conflict; r.code != CodeOK || r.err != nil {
		t.Errorf("conflict: 0x%02x %v, want acknowledged", r.code, r.err)
	}
	var re *RefusedError
	if r := <-tooOld; r.code != CodePayloadFormat || !errors.As(r.err, &re) || re.Reason != ReasonTooOld || re.Device != "b" || !errors.Is(r.err, store.ErrTooOld) {
		t.Errorf("too old: 0x%02x %v", r.code, r.err)
	}
	for i, ch := range good {
		if r := <-ch; r.code != 0 {
			t.Errorf("c%d: 0x%02x %v", i, r.code, r.err)
		}
	}
	g.mu.Lock()
	sizes := append([]int(nil), g.sizes...)
	g.mu.Unlock()
	if len(sizes) != 4 {
		t.Fatalf("appends of %v samples, want 4 appends (2 before, the held one, one group)", sizes)
	}
	want := map[RejectKey]uint64{{"a", ReasonDuplicate}: 1, {"b", ReasonTooOld}: 1}
	if got := p.Rejected(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rejections %v, want %v", got, want)
	}
	res, err := st.Query(ctx, `count by (device) (count_over_time(loadwatch_power_watts[3d]))`, now)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	for _, s := range res.Series {
		for _, l := range s.Labels {
			if l.Name == store.LabelDevice {
				counts[l.Value] = s.Points[0].V
			}
		}
	}
	if fmt.Sprint(counts) != "map[a:1 blocker:1 c0:1 c1:1 c2:1 c3:1 c4:1 z:1]" {
		t.Errorf("stored power samples per device: %v", counts)
	}
	res, err = st.Query(ctx, `loadwatch_power_watts{device="a"}`, now.Add(-time.Hour))
	if err != nil || len(res.Series) != 1 || res.Series[0].Points[0].V != 100 {
		t.Errorf("device a keeps its first value: %+v %v", res, err)
	}
	// The conflicting reading counts as stored: its replay is a duplicate.
	if r := ing("a", 2, now.Add(-time.Hour), "200"); r.code != 0 || p.Rejected()[RejectKey{"a", ReasonDuplicate}] != 2 {
		t.Errorf("replay of the conflicting reading: 0x%02x %v %v", r.code, r.err, p.Rejected())
	}
}

// TestGroupCommitCancel: a message whose ctx ends while it waits for its
// group is not appended and is refused as retryable; the others of its
// group are appended; its retry is stored.
func TestGroupCommitCancel(t *testing.T) {
	rec := &recStore{}
	g := newGate(rec)
	p, _ := New(Config{Store: g, Now: func() time.Time { return t0.Add(time.Hour) }})
	p.commit.parallel = 1 // one append at a time, so that messages queue behind the held one
	bg := context.Background()
	cancelled, cancel0 := context.WithCancel(bg)
	cancel0()
	if c, err := p.Ingest(cancelled, "x", telemetry.Topic("x", telemetry.ChannelTelemetry), payload("e", 1, t0, "1")); c != CodeUnspecified || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled before: 0x%02x %v", c, err)
	}
	g.arm()
	blocker := ingestAsync(bg, p, "blocker", payload("e", 1, t0, "10"))
	<-g.entered
	ctx, cancel := context.WithCancel(bg)
	x := ingestAsync(ctx, p, "x", payload("e", 1, t0, "1"))
	waitQueued(t, p, 1)
	y := ingestAsync(bg, p, "y", payload("e", 1, t0, "2"))
	waitQueued(t, p, 2)
	cancel()
	r := <-x
	if r.code != CodeUnspecified || !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled while queued: 0x%02x %v", r.code, r.err)
	}
	waitQueued(t, p, 1)
	close(g.release)
	if r := <-blocker; r.code != 0 {
		t.Fatal(r.err)
	}
	if r := <-y; r.code != 0 {
		t.Fatal(r.err)
	}
	key := fmt.Sprintf("x/%s/%d", store.MetricPower, store.Millis(t0))
	rec.mu.Lock()
	n, ny := rec.seen[key], rec.seen[fmt.Sprintf("y/%s/%d", store.MetricPower, store.Millis(t0))]
	rec.mu.Unlock()
	if n != 0 || ny != 1 {
		t.Fatalf("x appended %d times (want 0), y %d (want 1)", n, ny)
	}
	if c, err := p.Ingest(bg, "x", telemetry.Topic("x", telemetry.ChannelTelemetry), payload("e", 1, t0, "1")); c != 0 {
		t.Fatalf("retry: %v", err)
	}
	rec.mu.Lock()
	n = rec.seen[key]
	rec.mu.Unlock()
	if n != 1 || p.Rejected()[RejectKey{"x", ReasonStoreFailed}] != 2 {
		t.Fatalf("retry appended %d times; rejections %v", n, p.Rejected())
	}
}

// TestCommitterCancelledLeader: a request chosen to lead the next group
// whose ctx has ended is not appended itself, but still appends the rest
// of the queue and passes the lead on.
func TestCommitterCancelledLeader(t *testing.T) {
	rec := &recStore{}
	c := &committer{st: rec}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	smp := func(dev string) []store.Sample {
		return []store.Sample{{Metric: store.MetricPower, Labels: label(dev), T: 1, V: 1}}
	}
	r := &commitReq{samples: smp("r"), wake: make(chan bool, 1), lead: true} // taken off the queue by handOff
	q := &commitReq{samples: smp("q"), wake: make(chan bool, 1)}
	c.queue, c.running = []*commitReq{q}, 1
	c.mu.Lock()
	if err := c.lead(ctx, r); !errors.Is(err, context.Canceled) {
		t.Fatalf("leader: %v", err)
	}
	if lead := <-q.wake; lead || q.err != nil {
		t.Fatalf("q: lead %v err %v", lead, q.err)
	}
	if c.running != 0 || len(c.queue) != 0 {
		t.Fatalf("running %d queue %d", c.running, len(c.queue))
	}
	if rec.seen["r/"+store.MetricPower+"/1"] != 0 || rec.seen["q/"+store.MetricPower+"/1"] != 1 {
		t.Fatalf("appended %v", rec.seen)
	}
}

// TestCommitterConcurrentCancels: many goroutines append while some give
// up at random moments. A request that returns nil was appended exactly
// once; one that returns an error was not appended at all.
func TestCommitterConcurrentCancels(t *testing.T) {
	for _, parallel := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("parallel=%d", parallel), func(t *testing.T) { testConcurrentCancels(t, parallel) })
	}
}

func testConcurrentCancels(t *testing.T, parallel int) {
	rec := &recStore{}
	c := &committer{st: slowStore{rec}, parallel: parallel}
	const workers, each = 16, 150
	type outcome struct {
		key string
		err error
	}
	out := make(chan outcome, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			dev := fmt.Sprintf("w%d", w)
			for i := range each {
				ctx, cancel := context.WithCancel(context.Background())
				switch rng.IntN(4) {
				case 0:
					cancel()
				case 1:
					time.AfterFunc(time.Duration(rng.IntN(200))*time.Microsecond, cancel)
				}
				err := c.append(ctx, []store.Sample{{Metric: store.MetricPower, Labels: label(dev), T: int64(i), V: 1}})
				cancel()
				out <- outcome{fmt.Sprintf("%s/%s/%d", dev, store.MetricPower, i), err}
			}
		}()
	}
	wg.Wait()
	close(out)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var ok, gaveUp int
	for o := range out {
		n := rec.seen[o.key]
		switch {
		case o.err == nil && n != 1:
			t.Errorf("%s: acknowledged but appended %d times", o.key, n)
		case o.err != nil && n != 0:
			t.Errorf("%s: refused (%v) but appended %d times", o.key, o.err, n)
		case o.err != nil && !errors.Is(o.err, context.Canceled):
			t.Errorf("%s: %v", o.key, o.err)
		case o.err == nil:
			ok++
		default:
			gaveUp++
		}
	}
	if c.running != 0 || len(c.queue) != 0 {
		t.Errorf("committer left %d running with %d queued", c.running, len(c.queue))
	}
	t.Logf("%d appended in %d appends, %d gave up", ok, c.appends.Load(), gaveUp)
}

// slowStore makes each append take a little while, so that requests queue.
type slowStore struct{ Store }

func (s slowStore) Append(ctx context.Context, b []store.Sample) error {
	time.Sleep(50 * time.Microsecond)
	return s.Store.Append(ctx, b)
}

// TestAppendConcurrencyNegativeDisablesGrouping: with grouping off, a
// message does not wait for another device's running append.
func TestAppendConcurrencyNegativeDisablesGrouping(t *testing.T) {
	g := newGate(&recStore{})
	p, _ := New(Config{Store: g, Now: func() time.Time { return t0.Add(time.Hour) }, AppendConcurrency: -1})
	g.arm()
	blocker := ingestAsync(context.Background(), p, "blocker", payload("e", 1, t0, "10"))
	<-g.entered
	if c, err := p.Ingest(context.Background(), "x", telemetry.Topic("x", telemetry.ChannelTelemetry), payload("e", 1, t0, "1")); c != 0 {
		t.Fatal(err)
	}
	close(g.release)
	if r := <-blocker; r.code != 0 {
		t.Fatal(r.err)
	}
	if s := p.Stats(); s.Appends != 2 || s.AppendedMessages != 2 {
		t.Fatalf("stats %+v", s)
	}
}
