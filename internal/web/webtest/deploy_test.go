package webtest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"go.yaml.in/yaml/v3"
)

var deployDir = filepath.Join("..", "..", "..", "deploy")

// serveFlags reads the flag names of `loadwatch serve` from its source.
func serveFlags(t *testing.T) map[string]bool {
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "cmd", "loadwatch", "serve.go"))
	if err != nil {
		t.Skipf("no serve command yet: %v", err)
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`name:"([a-z0-9-]+)"`).FindAllStringSubmatch(string(b), -1) {
		out[m[1]] = true
	}
	return out
}

// TestComposeFile checks deploy/compose/docker-compose.yml without a
// container engine: it parses, every serve flag exists, every mounted file
// is in the repository, and the replicas differ in client id and volume.
func TestComposeFile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(deployDir, "compose", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Command []string `yaml:"command"`
			Volumes []string `yaml:"volumes"`
			Image   string   `yaml:"image"`
		} `yaml:"services"`
		Volumes map[string]any `yaml:"volumes"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	flags := serveFlags(t)
	clients, vols := map[string]bool{}, map[string]bool{}
	replicas := 0
	for name, s := range c.Services {
		if s.Image == "" {
			t.Errorf("service %s has no image", name)
		}
		if len(s.Command) > 0 && s.Command[0] == "serve" {
			replicas++
			for i, a := range s.Command {
				if f, ok := strings.CutPrefix(a, "--"); ok && !flags[f] {
					t.Errorf("%s: serve has no flag --%s", name, f)
				}
				if a == "--broker-client-id" {
					if clients[s.Command[i+1]] {
						t.Errorf("%s: client id %s used twice", name, s.Command[i+1])
					}
					clients[s.Command[i+1]] = true
				}
			}
		}
		for _, v := range s.Volumes {
			src := strings.Split(v, ":")[0]
			if strings.HasPrefix(src, ".") {
				if strings.Contains(src, "mosquitto/passwd") {
					continue // made by mosquitto-users.sh
				}
				if _, err := os.Stat(filepath.Join(deployDir, "compose", src)); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s: undeclared volume %s", name, src)
			} else if len(s.Command) > 0 && s.Command[0] == "serve" {
				if vols[src] {
					t.Errorf("%s: data volume %s shared with another replica", name, src)
				}
				vols[src] = true
			}
		}
	}
	if replicas < 2 {
		t.Errorf("%d serve replicas, want several", replicas)
	}
}

// TestPrometheusFiles runs promtool over deploy/prometheus and
// deploy/compose/scrape.yml, including the rules' unit tests.
func TestPrometheusFiles(t *testing.T) {
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Skip("no promtool (Debian: prometheus package)")
	}
	p := filepath.Join(deployDir, "prometheus")
	for _, args := range [][]string{
		{"check", "rules", filepath.Join(p, "loadwatch-alerts.yml")},
		{"check", "config", filepath.Join(p, "prometheus.yml")},
		{"check", "config", filepath.Join(p, "remote-write-receiver.yml")},
		{"check", "config", filepath.Join(deployDir, "compose", "scrape.yml")},
		{"test", "rules", filepath.Join(p, "loadwatch-alerts.test.yml")},
	} {
		out, err := exec.Command("promtool", args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestSystemdUnits runs systemd-analyze verify over the serve units.
func TestSystemdUnits(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("no systemd-analyze")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "loadwatch")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	var units []string
	for _, src := range []string{"loadwatch-serve.service", "loadwatch-serve@.service"} {
		b, err := os.ReadFile(filepath.Join(deployDir, "systemd", src))
		if err != nil {
			t.Fatal(err)
		}
		dst := strings.Replace(src, "@.", "@1.", 1)
		os.WriteFile(filepath.Join(dir, dst), []byte(strings.ReplaceAll(string(b), "/usr/local/bin/loadwatch", bin)), 0o644)
		units = append(units, filepath.Join(dir, dst))
	}
	out, err := exec.Command("systemd-analyze", append([]string{"verify", "--man=no"}, units...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestMosquittoConfig starts Debian's mosquitto with the compose
// configuration and ACL (paths and port rewritten) and checks that a
// replica may take the shared subscription and send commands, and that a
// device may publish only under its own id.
func TestMosquittoConfig(t *testing.T) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		t.Skip("no mosquitto (Debian: mosquitto package)")
	}
	pw, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		t.Skip("no mosquitto_passwd")
	}
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "data"), 0o755)
	passwd := filepath.Join(dir, "passwd")
	for i, u := range [][2]string{{"loadwatch", "replica-secret"}, {"kitchen", "device-secret"}} {
		args := []string{"-b", passwd, u[0], u[1]}
		if i == 0 {
			args = append([]string{"-c"}, args...)
		}
		if out, err := exec.Command(pw, args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd: %v %s", err, out)
		}
	}
	addr := freePort(t)
	_, port, _ := net.SplitHostPort(addr)
	conf, err := os.ReadFile(filepath.Join(deployDir, "compose", "mosquitto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	acl, _ := filepath.Abs(filepath.Join(deployDir, "compose", "mosquitto.acl"))
	s := strings.NewReplacer("/mosquitto/config/passwd", passwd, "/mosquitto/config/mosquitto.acl", acl,
		"/mosquitto/data/", filepath.Join(dir, "data")+"/", "listener 1883", "listener "+port+" 127.0.0.1").Replace(string(conf))
	if os.Getuid() == 0 {
		s += "\nuser root\n" // the files are the test's; mosquitto would drop to user mosquitto
	}
	os.WriteFile(filepath.Join(dir, "m.conf"), []byte(s), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-c", filepath.Join(dir, "m.conf"))
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); cmd.Wait() }()
	var nc net.Conn
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if nc, err = net.Dial("tcp", addr); err == nil {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("mosquitto did not listen: %v\n%s", err, log.String())
		}
	}
	got := make(chan *paho.Publish, 10)
	connect := func(nc net.Conn, id, user, pass string) *paho.Client {
		c := paho.NewClient(paho.ClientConfig{Conn: nc, OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			got <- pr.Packet
			return true, nil
		}}})
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		defer ccancel()
		if _, err := c.Connect(cctx, &paho.Connect{ClientID: id, Username: user, UsernameFlag: true, Password: []byte(pass), PasswordFlag: true, CleanStart: true, KeepAlive: 30}); err != nil {
			t.Fatalf("connect %s: %v\n%s", user, err, log.String())
		}
		t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}) })
		return c
	}
	rep := connect(nc, "loadwatch-1", "loadwatch", "replica-secret")
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	sa, err := rep.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$share/loadwatch/loadwatch/v1/#", QoS: 1}}})
	if err != nil || len(sa.Reasons) != 1 || sa.Reasons[0] >= 0x80 {
		t.Fatalf("replica's shared subscription refused: %v %+v", err, sa)
	}
	nc2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	dev := connect(nc2, "kitchen", "kitchen", "device-secret")
	if _, err := dev.Publish(sctx, &paho.Publish{Topic: "loadwatch/v1/kitchen/telemetry", QoS: 1, Payload: []byte(`{"v":1}`)}); err != nil {
		t.Errorf("device publish under its own id: %v", err)
	}
	if _, err := dev.Publish(sctx, &paho.Publish{Topic: "loadwatch/v1/office/telemetry", QoS: 1, Payload: []byte(`{"v":1}`)}); err == nil {
		t.Errorf("a device published under another id without an error")
	}
	select {
	case p := <-got:
		if p.Topic != "loadwatch/v1/kitchen/telemetry" {
			t.Errorf("the replica got %s: a device published under another id", p.Topic)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the replica got nothing\n%s", log.String())
	}
	select {
	case p := <-got:
		t.Errorf("unexpected second message %s", p.Topic)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := rep.Publish(sctx, &paho.Publish{Topic: "loadwatch/v1/kitchen/cmd", QoS: 1, Payload: []byte(`{"v":1,"id":"a","kind":"relay_off"}`)}); err != nil {
		t.Errorf("replica command: %v", err)
	}
}
