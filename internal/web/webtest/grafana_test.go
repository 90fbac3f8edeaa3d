package webtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"loadwatch/internal/registry"
	"loadwatch/internal/server"
	"loadwatch/internal/telemetry"

	"github.com/eclipse/paho.golang/paho"
)

// dashboardDir is deploy/grafana/dashboards, from this package's folder.
var dashboardDir = filepath.Join("..", "..", "..", "deploy", "grafana", "dashboards")

// panelQuery is one PromQL expression of a dashboard.
type panelQuery struct {
	dashboard, panel, expr string
	rangeQuery             bool
}

// dashboardQueries reads every panel target and annotation of the
// dashboards, with Grafana's variables replaced by test values.
func dashboardQueries(t *testing.T) map[string][]panelQuery {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dashboardDir, "*.json"))
	if err != nil || len(files) < 5 {
		t.Fatalf("dashboards in %s: %v %v", dashboardDir, files, err)
	}
	vars := strings.NewReplacer("$__rate_interval", "1m", "$__interval", "1m", "$__range", "1h", "$device", "kitchen", "$price", "0.30")
	out := map[string][]panelQuery{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr  string `json:"expr"`
					Range bool   `json:"range"`
				} `json:"targets"`
			} `json:"panels"`
			Annotations struct {
				List []struct {
					Name string `json:"name"`
					Expr string `json:"expr"`
				} `json:"list"`
			} `json:"annotations"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		name := filepath.Base(f)
		for _, p := range d.Panels {
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", name, p.Title)
			}
			for _, tg := range p.Targets {
				out[name] = append(out[name], panelQuery{name, p.Title, vars.Replace(tg.Expr), tg.Range})
			}
		}
		for _, a := range d.Annotations.List {
			if a.Expr != "" {
				out[name] = append(out[name], panelQuery{name, "annotation " + a.Name, vars.Replace(a.Expr), true})
			}
		}
	}
	return out
}

var leftover = regexp.MustCompile(`\$\{?[a-zA-Z_]+`)

// promResult runs q against a Prometheus-compatible API and returns the
// number of series (or 1 for a scalar).
func promResult(t *testing.T, base string, q panelQuery, now time.Time) (int, error) {
	v := url.Values{"query": {q.expr}}
	path := "/api/v1/query"
	if q.rangeQuery {
		path = "/api/v1/query_range"
		v.Set("start", strconv.FormatInt(now.Add(-time.Hour).Unix(), 10))
		v.Set("end", strconv.FormatInt(now.Unix(), 10))
		v.Set("step", "15")
	} else {
		v.Set("time", strconv.FormatInt(now.Unix(), 10))
	}
	resp, err := http.PostForm(base+path, v)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("%s", r.Error)
	}
	if r.Data.ResultType == "scalar" {
		return 1, nil
	}
	var series []json.RawMessage
	json.Unmarshal(r.Data.Result, &series)
	return len(series), nil
}

// freePort returns a port that was free a moment ago.
func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestGrafanaDashboardQueries runs `loadwatch serve`'s server with two
// simulated devices, and Debian's Prometheus scraping its /metrics with
// deploy/prometheus's rules loaded; every panel and annotation query of
// deploy/grafana/dashboards must parse and return data, from loadwatch's
// own query API or, for pipeline-health.json, from that Prometheus.
func TestGrafanaDashboardQueries(t *testing.T) {
	queries := dashboardQueries(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	if err := server.WriteModel(filepath.Join(dir, server.ModelFile), bundledModel(t)); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler), Out: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("server: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("server not ready")
	}
	base := "http://" + srv.HTTPAddr()
	for _, id := range []string{"kitchen", "office"} {
		_, tok, err := srv.Registry().Add(ctx, registry.NewDevice{ID: id})
		if err != nil {
			t.Fatal(err)
		}
		d := newSimDevice(t, srv.MQTTAddr(), id, tok)
		d.backfill(t, 2*time.Hour)
		go d.run(ctx)
		if id == "office" { // one refusal, so rejection panels have a reason
			pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
			d.c.Publish(pctx, &paho.Publish{Topic: telemetry.Topic(id, telemetry.ChannelTelemetry), QoS: 1, Payload: []byte(`{"v":1,"seq":"x"}`)})
			pcancel()
		}
	}

	// Prometheus scraping /metrics every second, with our alerting rules.
	promAddr := ""
	if _, err := exec.LookPath("prometheus"); err == nil {
		rules, _ := filepath.Abs(filepath.Join(dashboardDir, "..", "..", "prometheus", "loadwatch-alerts.yml"))
		cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [%q]\nscrape_configs:\n  - job_name: loadwatch\n    static_configs:\n      - targets: [%q]\n", rules, srv.HTTPAddr())
		pdir := t.TempDir()
		if err := os.WriteFile(filepath.Join(pdir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		promAddr = freePort(t)
		cmd := exec.CommandContext(ctx, "prometheus", "--config.file="+filepath.Join(pdir, "prometheus.yml"),
			"--storage.tsdb.path="+filepath.Join(pdir, "data"), "--web.listen-address="+promAddr)
		var plog strings.Builder
		cmd.Stdout, cmd.Stderr = &plog, &plog
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		defer func() {
			if t.Failed() {
				t.Logf("prometheus log:\n%s", plog.String())
			}
		}()
	} else {
		t.Log("no prometheus binary: pipeline-health.json is only parsed")
	}

	// Live data for a few seconds (events, classes, several scrapes).
	time.Sleep(4 * time.Second)
	checked := 0
	defer func() { t.Logf("%d dashboard queries parsed and returned data", checked) }()
	for name, qs := range queries {
		for _, q := range qs {
			if m := leftover.FindString(q.expr); m != "" {
				t.Errorf("%s / %s: unreplaced variable %s in %s", name, q.panel, m, q.expr)
				continue
			}
			if err := srv.Store().ParseExpr(q.expr); err != nil {
				t.Errorf("%s / %s: %v", name, q.panel, err)
				continue
			}
			target := base
			if name == "pipeline-health.json" {
				if promAddr == "" {
					continue
				}
				target = "http://" + promAddr
			}
			// A query may need a few more scrapes or readings: retry a while.
			var n int
			var err error
			for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
				if n, err = promResult(t, target, q, time.Now()); err == nil && n > 0 {
					break
				}
			}
			if err != nil || n == 0 {
				t.Errorf("%s / %s: %q returned %d series (%v)", name, q.panel, q.expr, n, err)
				continue
			}
			checked++
		}
	}
}
