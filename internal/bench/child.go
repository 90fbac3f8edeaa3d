package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Child is a loadwatch server running in a child process of its own, so
// that its CPU and memory are measured apart from the load generator's.
// It keeps the same MQTT and HTTP addresses across restarts.
type Child struct {
	// Command builds the command that serves dataDir on the two addresses
	// (for the CLI: `loadwatch serve --data D --mqtt M --http H`).
	command  func(dataDir, mqttAddr, httpAddr string) *exec.Cmd
	dataDir  string
	mqttAddr string
	httpAddr string
	log      io.Writer

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	starts int
}

// ChildConfig configures NewChild.
type ChildConfig struct {
	Command func(dataDir, mqttAddr, httpAddr string) *exec.Cmd
	DataDir string
	// Log receives the child's stdout and stderr (default: discarded).
	Log io.Writer
}

// NewChild picks two free loopback ports; Start runs the server.
func NewChild(cfg ChildConfig) (*Child, error) {
	if cfg.Command == nil || cfg.DataDir == "" {
		return nil, errors.New("bench: child server needs a command and a data directory")
	}
	m, err := freePort()
	if err != nil {
		return nil, err
	}
	h, err := freePort()
	if err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	return &Child{command: cfg.Command, dataDir: cfg.DataDir, mqttAddr: m, httpAddr: h, log: cfg.Log}, nil
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("bench: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// MQTTAddr is the broker's host:port.
func (c *Child) MQTTAddr() string { return c.mqttAddr }

// URL is the HTTP API's base URL.
func (c *Child) URL() string { return "http://" + c.httpAddr }

// Starts counts the processes started.
func (c *Child) Starts() int { c.mu.Lock(); defer c.mu.Unlock(); return c.starts }

// PID is the running child's process id (0 when none).
func (c *Child) PID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil || c.cmd.Process == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// Start runs the server and waits until its MQTT and HTTP ports answer
// (timeout: the first start may train the default model).
func (c *Child) Start(ctx context.Context, timeout time.Duration) error {
	c.mu.Lock()
	if c.cmd != nil {
		c.mu.Unlock()
		return errors.New("bench: child server already running")
	}
	cmd := c.command(c.dataDir, c.mqttAddr, c.httpAddr)
	cmd.Stdout, cmd.Stderr = c.log, c.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the bench
	if err := cmd.Start(); err != nil {
		c.mu.Unlock()
		return fmt.Errorf("bench: start server: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	c.cmd, c.exited = cmd, exited
	c.starts++
	c.mu.Unlock()

	deadline := time.Now().Add(timeout)
	hc := &http.Client{Timeout: time.Second}
	for {
		if c.ready(hc) {
			return nil
		}
		select {
		case <-exited:
			c.mu.Lock()
			c.cmd = nil
			c.mu.Unlock()
			return fmt.Errorf("bench: server exited during start: %v", cmd.ProcessState)
		case <-ctx.Done():
			c.Kill()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.Kill()
			return fmt.Errorf("bench: server not ready within %v", timeout)
		}
	}
}

func (c *Child) ready(hc *http.Client) bool {
	nc, err := net.DialTimeout("tcp", c.mqttAddr, time.Second)
	if err != nil {
		return false
	}
	nc.Close()
	resp, err := hc.Get(c.URL() + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Stop ends the child with sig and waits for it (SIGKILL after grace).
func (c *Child) stop(sig syscall.Signal, grace time.Duration) error {
	c.mu.Lock()
	cmd, exited := c.cmd, c.exited
	c.cmd = nil
	c.mu.Unlock()
	if cmd == nil {
		return nil
	}
	cmd.Process.Signal(sig)
	select {
	case <-exited:
		return nil
	case <-time.After(grace):
		cmd.Process.Kill()
		<-exited
		return fmt.Errorf("bench: server did not stop within %v of %v; killed", grace, sig)
	}
}

// Stop shuts the server down gracefully (SIGTERM): the broker disconnects
// its clients after the ingest in progress.
func (c *Child) Stop() error { return c.stop(syscall.SIGTERM, 30*time.Second) }

// Kill ends the server with SIGKILL, as a crash or power cut would.
func (c *Child) Kill() error { return c.stop(syscall.SIGKILL, 10*time.Second) }

// Proc reads the running child's CPU time and memory.
func (c *Child) Proc() (ProcStat, error) {
	pid := c.PID()
	if pid == 0 {
		return ProcStat{}, errors.New("bench: no server running")
	}
	return ReadProc(pid)
}

// ServeCommand returns a Command that runs `exe serve` with extra flags.
func ServeCommand(exe string, extra ...string) func(dataDir, mqttAddr, httpAddr string) *exec.Cmd {
	return func(dataDir, mqttAddr, httpAddr string) *exec.Cmd {
		args := append([]string{"serve", "--data", dataDir, "--mqtt", mqttAddr, "--http", httpAddr}, extra...)
		cmd := exec.Command(exe, args...)
		cmd.Env = os.Environ()
		return cmd
	}
}

// Alive reports whether the child started last is still running.
func (c *Child) Alive() bool {
	c.mu.Lock()
	ex := c.exited
	running := c.cmd != nil
	c.mu.Unlock()
	if !running {
		return false
	}
	select {
	case <-ex:
		return false
	default:
		return true
	}
}
