package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"

	"loadwatch/internal/server"
)

// TestMain doubles as the child server: with LOADWATCH_BENCH_SERVE set,
// the test binary runs `serve --data D --mqtt M --http H` (no model, for
// speed) instead of the tests, so the smoke tests measure a server in a
// process of its own without building the loadwatch binary.
func TestMain(m *testing.M) {
	if os.Getenv("LOADWATCH_BENCH_SERVE") != "" {
		os.Exit(serveChild(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func serveChild(args []string) int {
	var dir, mqtt, http string
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "--data":
			dir = args[i+1]
		case "--mqtt":
			mqtt = args[i+1]
		case "--http":
			http = args[i+1]
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	s, err := server.New(server.Config{DataDir: dir, MQTTAddr: mqtt, HTTPAddr: http, NoModel: true,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), Out: io.Discard})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := s.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// testCommand runs this test binary as the child server.
func testCommand(dataDir, mqttAddr, httpAddr string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "serve", "--data", dataDir, "--mqtt", mqttAddr, "--http", httpAddr)
	cmd.Env = append(os.Environ(), "LOADWATCH_BENCH_SERVE=1")
	return cmd
}

type tlog struct{ t testing.TB }

func (w tlog) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
