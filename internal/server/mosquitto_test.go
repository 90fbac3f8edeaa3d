package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"loadwatch/internal/mqttc"
	"loadwatch/internal/telemetry"
)

// mosquittoPath is Debian's Mosquitto; LOADWATCH_MOSQUITTO overrides it.
func mosquittoPath(t *testing.T) string {
	p := os.Getenv("LOADWATCH_MOSQUITTO")
	if p == "" {
		p = "/usr/sbin/mosquitto"
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("mosquitto not installed (%s): apt-get install mosquitto", p)
	}
	return p
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startMosquitto runs Mosquitto on an ephemeral port until the test ends
// (stopped by its PID) and returns its address.
func startMosquitto(t *testing.T) string {
	bin := mosquittoPath(t)
	dir := t.TempDir()
	port := freePort(t)
	conf := filepath.Join(dir, "mosquitto.conf")
	// No queue limits: Mosquitto's defaults drop QoS 1 messages to a
	// lagging subscriber (see docs/SERVER.md).
	err := os.WriteFile(conf, fmt.Appendf(nil, `listener %d 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_inflight_messages 0
log_dest stderr
log_type error
log_type warning
`, port), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "mosquitto.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("mosquitto log:\n%s", b)
		}
	})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	eventually(t, 10*time.Second, "mosquitto to listen", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}

// TestMosquittoReplicas: two serve replicas share Mosquitto's messages
// through $share/loadwatch/...; every reading is stored by exactly one of
// them.
func TestMosquittoReplicas(t *testing.T) {
	mq := startMosquitto(t)
	n := 200
	if v, _ := strconv.Atoi(os.Getenv("LOADWATCH_REPLICA_READINGS")); v > 0 {
		n = v
	}
	var reps []*Server
	for _, id := range []string{"replica-a", "replica-b"} {
		reps = append(reps, start(t, Config{ExternalBroker: "mqtt://" + mq, BrokerClientID: id, MQTTAddr: "off"}))
	}
	const devices = 4
	conns := make(map[int]func(topic string, payload []byte) (byte, error))
	for d := 0; d < devices; d++ {
		c := dial(t, mq, fmt.Sprintf("dev%d", d), "", nil)
		conns[d] = func(topic string, payload []byte) (byte, error) { return publishE(c, topic, payload) }
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	for i := 0; i < n; i++ {
		d, seq := i%devices, uint64(i/devices+1)
		dev := fmt.Sprintf("dev%d", d)
		code, err := conns[d](telemetry.Topic(dev, telemetry.ChannelTelemetry), reading("boot", seq, base.Add(time.Duration(seq)*time.Second)))
		if err != nil || code != 0 {
			t.Fatalf("publish %s/%d: 0x%02x %v", dev, seq, code, err)
		}
	}
	stored := func() (total uint64) {
		for _, r := range reps {
			total += r.Pipeline().Stats().Readings
		}
		return total
	}
	eventually(t, 30*time.Second, fmt.Sprintf("%d readings stored", n), func() bool { return stored() >= uint64(n) })
	time.Sleep(200 * time.Millisecond) // let a duplicate, if any, arrive
	if got := stored(); got != uint64(n) {
		t.Errorf("replicas stored %d readings, want %d", got, n)
	}
	for i, r := range reps {
		if got := r.Pipeline().Stats().Readings; got == 0 {
			t.Errorf("replica %d stored nothing: the load was not shared", i)
		} else {
			t.Logf("replica %d stored %d readings", i, got)
		}
	}
	for d := 0; d < devices; d++ {
		dev := fmt.Sprintf("dev%d", d)
		var all []float64
		for _, r := range reps {
			all = append(all, rawPowers(t, r.HTTPAddr(), dev)...)
		}
		sort.Float64s(all)
		want := n / devices
		if len(all) != want {
			t.Errorf("%s: %d readings stored over both replicas, want %d", dev, len(all), want)
			continue
		}
		for i, v := range all {
			if v != float64(i+1) {
				t.Errorf("%s: reading %d missing or stored twice (got %v)", dev, i+1, v)
				break
			}
		}
	}
}

// TestMosquittoReplicaRestart: one replica stops in the middle of the
// stream and comes back on the same data directory and client id; its
// persistent session at Mosquitto kept what it had not acknowledged, so
// every reading ends up stored, none twice.
func TestMosquittoReplicaRestart(t *testing.T) {
	mq := startMosquitto(t)
	const n, devices = 400, 4
	other := start(t, Config{ExternalBroker: "mqtt://" + mq, BrokerClientID: "replica-b", MQTTAddr: "off"})
	dirA := t.TempDir()
	runA := func() (*Server, func()) {
		s, err := New(Config{DataDir: dirA, ExternalBroker: "mqtt://" + mq, BrokerClientID: "replica-a", MQTTAddr: "off",
			HTTPAddr: "127.0.0.1:0", ModelFile: testModel(t), Logger: testLogger(t), Out: io.Discard})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		select {
		case <-s.Ready():
		case err := <-done:
			t.Fatalf("replica a: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("replica a not ready")
		}
		return s, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("replica a: %v", err)
			}
		}
	}
	a, stopA := runA()
	conns := make([]*mqttc.Conn, devices)
	for d := range conns {
		conns[d] = dial(t, mq, fmt.Sprintf("dev%d", d), "", nil)
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	for i := 0; i < n; i++ {
		if i == n/2 {
			stopA()
		}
		d, seq := i%devices, uint64(i/devices+1)
		dev := fmt.Sprintf("dev%d", d)
		if code, err := publishE(conns[d], telemetry.Topic(dev, telemetry.ChannelTelemetry), reading("boot", seq, base.Add(time.Duration(seq)*time.Second))); err != nil || code != 0 {
			t.Fatalf("publish: 0x%02x %v", code, err)
		}
	}
	a, stopA = runA()
	defer stopA()
	count := func() (total int, perDev [devices][]float64) {
		for d := 0; d < devices; d++ {
			for _, r := range []*Server{a, other} {
				v := rawPowers(t, r.HTTPAddr(), fmt.Sprintf("dev%d", d))
				perDev[d] = append(perDev[d], v...)
				total += len(v)
			}
		}
		return total, perDev
	}
	eventually(t, 30*time.Second, fmt.Sprintf("%d readings stored", n), func() bool { c, _ := count(); return c >= n })
	total, perDev := count()
	t.Logf("after its restart replica a stored %d readings (queued for its session while it was down)", a.Pipeline().Stats().Readings)
	if total != n {
		t.Errorf("%d readings stored over both replicas, want %d", total, n)
	}
	for d, vs := range perDev {
		sort.Float64s(vs)
		for i, v := range vs {
			if v != float64(i+1) {
				t.Errorf("dev%d: reading %d missing or stored twice", d, i+1)
				break
			}
		}
	}
}
