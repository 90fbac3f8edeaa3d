package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"loadwatch/internal/forest"
	"loadwatch/internal/mqttc"
	"loadwatch/internal/registry"
	"loadwatch/internal/telemetry"
)

var (
	modelOnce sync.Once
	modelPath string
	modelErr  error
)

// testModel trains the default model once per test binary.
func testModel(t testing.TB) string {
	t.Helper()
	modelOnce.Do(func() {
		var m *forest.Model
		m, modelErr = TrainDefaultModel(context.Background())
		if modelErr != nil {
			return
		}
		dir, err := os.MkdirTemp("", "lw-model-")
		if err != nil {
			modelErr = err
			return
		}
		modelPath = filepath.Join(dir, ModelFile)
		modelErr = WriteModel(modelPath, m)
	})
	if modelErr != nil {
		t.Fatal(modelErr)
	}
	return modelPath
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("LOADWATCH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// start runs a server until the test ends.
func start(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	if cfg.MQTTAddr == "" {
		cfg.MQTTAddr = "127.0.0.1:0"
	}
	if cfg.ModelFile == "" && !cfg.NoModel {
		cfg.ModelFile = testModel(t)
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	cfg.Out = io.Discard
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server Run: %v", err)
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("server stopped before ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("server not ready within 30 s")
	}
	return s
}

func addDevice(t testing.TB, s *Server, id string) string {
	t.Helper()
	_, tok, err := s.Registry().Add(context.Background(), registry.NewDevice{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func dial(t testing.TB, broker, id, password string, onMsg func(mqttc.Message), subs ...string) *mqttc.Conn {
	t.Helper()
	c, err := mqttc.Dial(context.Background(), mqttc.Config{Broker: "mqtt://" + broker, ClientID: id, Password: password,
		ConnectTimeout: 5 * time.Second, OnMessage: onMsg, Subscribe: subs, CleanStart: true})
	if err != nil {
		t.Fatalf("dial %s as %s: %v", broker, id, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c.Close(ctx)
		cancel()
	})
	return c
}

// reading is a single-reading telemetry payload whose power is its seq,
// so that stored samples say which reading they came from.
func reading(epoch string, seq uint64, ts time.Time) []byte {
	m := telemetry.Message{Epoch: epoch, Readings: []telemetry.Telemetry{{
		Seq: seq, ClockSynced: true, State: telemetry.StateActive,
		HasEnergyTotal: true, EnergyTotal: 1000 + powerWh(seq),
		Reading: readingAt(ts, float64(seq)),
	}}}
	return m.Marshal()
}

func publishE(c *mqttc.Conn, topic string, payload []byte) (byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Publish(ctx, mqttc.Message{Topic: topic, Payload: payload, QoS: 1})
}

func publish(t *testing.T, c *mqttc.Conn, topic string, payload []byte) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code, err := c.Publish(ctx, mqttc.Message{Topic: topic, Payload: payload, QoS: 1})
	if err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return code
}

// promQuery runs an instant query and returns the vector's values by the
// given label.
func promQuery(t *testing.T, httpAddr, q, by string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string
		Data   struct {
			Result []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Status != "success" {
		t.Fatalf("query %s: %v %+v", q, err, body)
	}
	out := map[string]float64{}
	for _, r := range body.Data.Result {
		var v float64
		fmt.Sscan(r.Value[1].(string), &v)
		out[r.Metric[by]] = v
	}
	return out
}

// rawPowers returns the stored power samples of device (their values are
// the readings' seq numbers).
func rawPowers(t *testing.T, httpAddr, device string) []float64 {
	t.Helper()
	q := fmt.Sprintf(`loadwatch_power_watts{device=%q}[1d]`, device)
	resp, err := http.Get("http://" + httpAddr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Result []struct{ Values [][2]any }
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	var out []float64
	for _, r := range body.Data.Result {
		for _, v := range r.Values {
			var f float64
			fmt.Sscan(v[1].(string), &f)
			out = append(out, f)
		}
	}
	return out
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s %s", u, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// eventually polls f until it returns true or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sseReader reads SSE events of a stream.
func sseEvents(t *testing.T, u string) (<-chan string, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ch := make(chan string, 100)
	go func() {
		defer resp.Body.Close()
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if s, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				select {
				case ch <- s:
				default:
				}
			}
		}
	}()
	return ch, cancel
}

// testNow is a reading time safely in the past (queries at "now" see it).
func testNow() time.Time { return time.Now().Add(-time.Second) }
