// Package promtest starts Debian's Prometheus (/usr/bin/prometheus) for
// tests: on 127.0.0.1 with an ephemeral port, a temporary storage directory
// and the remote-write receiver enabled; the test's cleanup stops it by PID.
package promtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Binary is where Debian's prometheus package installs the server.
const Binary = "/usr/bin/prometheus"

// Server is a running Prometheus.
type Server struct {
	URL string // e.g. http://127.0.0.1:41234
	cmd *exec.Cmd
}

// WriteURL is the remote-write receiver's URL.
func (s *Server) WriteURL() string { return s.URL + "/api/v1/write" }

// Start runs Prometheus or skips the test when the binary is absent.
func Start(t testing.TB) *Server {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Skipf("%s not installed (apt-get install prometheus): %v", Binary, err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte("global:\n  scrape_interval: 1h\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		_ = l.Close()
		log, err := os.Create(filepath.Join(dir, fmt.Sprintf("prometheus-%d.log", attempt)))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(Binary,
			"--config.file="+cfg,
			"--storage.tsdb.path="+filepath.Join(dir, fmt.Sprintf("data-%d", attempt)),
			"--web.listen-address="+addr,
			"--web.enable-remote-write-receiver",
			"--log.level=warn",
		)
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		s := &Server{URL: "http://" + addr, cmd: cmd}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if err := s.waitReady(exited); err != nil {
			_ = cmd.Process.Kill()
			<-exited
			_ = log.Close()
			out, _ := os.ReadFile(log.Name())
			lastErr = fmt.Errorf("%w\n%s", err, out)
			continue
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
			_ = log.Close()
		})
		return s
	}
	t.Fatalf("prometheus did not start: %v", lastErr)
	return nil
}

func (s *Server) waitReady(exited <-chan error) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("prometheus exited: %v", err)
		default:
		}
		resp, err := http.Get(s.URL + "/-/ready")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("prometheus at %s not ready after 60 s", s.URL)
}

// Get performs a GET on the Prometheus HTTP API and returns the raw body.
func (s *Server) Get(ctx context.Context, path string, q url.Values) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return b, resp.StatusCode, err
}

// Count returns the value of a scalar-like instant query (the first
// sample's value), or 0 when the result is empty.
func (s *Server) Count(ctx context.Context, query string, at time.Time) (float64, error) {
	body, code, err := s.Get(ctx, "/api/v1/query", url.Values{"query": {query}, "time": {fmt.Sprintf("%.3f", float64(at.UnixMilli())/1000)}})
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("prometheus answered %d: %s", code, body)
	}
	var r struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, err
	}
	if len(r.Data.Result) == 0 {
		return 0, nil
	}
	var v float64
	if str, ok := r.Data.Result[0].Value[1].(string); ok {
		_, err = fmt.Sscan(str, &v)
	}
	return v, err
}
