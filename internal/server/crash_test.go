package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"loadwatch/internal/mqttc"
	"loadwatch/internal/registry"
	"loadwatch/internal/telemetry"
)

// TestChildServer is the server process of TestKillUnderLoad; it runs only
// when LOADWATCH_TEST_CHILD names a data directory.
func TestChildServer(t *testing.T) {
	dir := os.Getenv("LOADWATCH_TEST_CHILD")
	if dir == "" {
		t.Skip("only as the child of TestKillUnderLoad")
	}
	s, err := New(Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", ModelFile: os.Getenv("LOADWATCH_TEST_MODEL"),
		Logger: testLogger(t), Out: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		<-s.Ready()
		fmt.Printf("READY %s %s\n", s.HTTPAddr(), s.MQTTAddr())
	}()
	if err := s.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
}

type child struct {
	cmd        *exec.Cmd
	http, mqtt string
}

func startChild(t *testing.T, dir, model string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildServer$", "-test.v")
	cmd.Env = append(os.Environ(), "LOADWATCH_TEST_CHILD="+dir, "LOADWATCH_TEST_MODEL="+model)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ready := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "READY" {
				ready <- f
			}
		}
	}()
	select {
	case f := <-ready:
		c.http, c.mqtt = f[1], f[2]
	case <-time.After(60 * time.Second):
		t.Fatal("child server not ready within 60 s")
	}
	return c
}

// TestKillUnderLoad: devices publish while the server is killed with
// SIGKILL; after a restart on the same data directory, every reading the
// broker acknowledged is queryable.
func TestKillUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	dir := t.TempDir()
	model := testModel(t)
	ctx := context.Background()
	reg, err := registry.Open(ctx, registry.Path(dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	const devices = 4
	toks := make([]string, devices)
	for d := range toks {
		if _, toks[d], err = reg.Add(ctx, registry.NewDevice{ID: fmt.Sprintf("dev%d", d)}); err != nil {
			t.Fatal(err)
		}
	}
	reg.Close()

	load := 300 * time.Millisecond
	if v, err := time.ParseDuration(os.Getenv("LOADWATCH_KILL_AFTER")); err == nil {
		load = v
	}
	c := startChild(t, dir, model)
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	acked := make([][]uint64, devices)
	var wg sync.WaitGroup
	for d := 0; d < devices; d++ {
		conn := dial(t, c.mqtt, fmt.Sprintf("dev%d", d), toks[d], nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			topic := telemetry.Topic(fmt.Sprintf("dev%d", d), telemetry.ChannelTelemetry)
			for seq := uint64(1); ; seq++ {
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				code, err := conn.Publish(pctx, mqttc.Message{Topic: topic, Payload: reading("boot", seq, base.Add(time.Duration(seq)*time.Millisecond*10)), QoS: 1})
				cancel()
				if err != nil {
					return // the server is gone
				}
				if code == 0 {
					acked[d] = append(acked[d], seq)
				}
			}
		}()
	}
	time.Sleep(load)
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.cmd.Wait()
	wg.Wait()

	c = startChild(t, dir, model)
	total := 0
	for d := 0; d < devices; d++ {
		total += len(acked[d])
		stored := map[float64]bool{}
		for _, v := range rawPowers(t, c.http, fmt.Sprintf("dev%d", d)) {
			stored[v] = true
		}
		missing := 0
		for _, seq := range acked[d] {
			if !stored[float64(seq)] {
				missing++
			}
		}
		if missing > 0 {
			t.Errorf("dev%d: %d of %d acknowledged readings lost", d, missing, len(acked[d]))
		}
	}
	if total == 0 {
		t.Fatal("no reading acknowledged before the kill")
	}
	t.Logf("%d readings acknowledged before SIGKILL, all queryable after restart", total)
}
