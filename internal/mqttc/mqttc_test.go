package mqttc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"loadwatch/internal/broker"
	"loadwatch/internal/registry"
)

type auth struct{}

func (auth) Authenticate(_ context.Context, user, pass string) (registry.Principal, error) {
	switch {
	case user == "admin" && pass == "admin":
		return registry.Principal{ID: "admin", Admin: true}, nil
	case pass == "secret":
		return registry.Principal{ID: user}, nil
	}
	return registry.Principal{}, errors.New("bad credentials")
}

type ingest struct {
	mu  sync.Mutex
	got []string
}

func (in *ingest) Ingest(_ context.Context, _, topic string, payload []byte) (byte, error) {
	if string(payload) == "bad" {
		return 0x99, errors.New("refused")
	}
	in.mu.Lock()
	in.got = append(in.got, topic+" "+string(payload))
	in.mu.Unlock()
	return 0, nil
}

func startBroker(t *testing.T) (*broker.Broker, *ingest, string) {
	t.Helper()
	in := &ingest{}
	b, err := broker.New(broker.Config{TCPAddr: "127.0.0.1:0", DataDir: t.TempDir(), Logger: testLog()}, auth{}, in)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	select {
	case <-b.Ready():
	case err := <-done:
		t.Fatal(err)
	case <-time.After(20 * time.Second):
		t.Fatal("broker did not start")
	}
	t.Cleanup(func() { cancel(); <-done })
	return b, in, "mqtt://" + b.Addr("tcp")
}

func waitMsg(t *testing.T, ch <-chan Message, what string) Message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(20 * time.Second):
		t.Fatalf("no %s within 20 s", what)
	}
	return Message{}
}

func TestPublishAndRefusal(t *testing.T) {
	_, in, url := startBroker(t)
	c, err := Dial(t.Context(), Config{Broker: url, ClientID: "pi1", Password: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	reason, err := c.Publish(t.Context(), Message{Topic: "loadwatch/v1/pi1/telemetry", Payload: []byte("ok"), QoS: 1})
	if err != nil || reason != 0 {
		t.Fatalf("publish: reason %#x, %v", reason, err)
	}
	reason, err = c.Publish(t.Context(), Message{Topic: "loadwatch/v1/pi1/telemetry", Payload: []byte("bad"), QoS: 1})
	if err != nil || reason != 0x99 {
		t.Fatalf("refused publish: reason %#x, err %v; want 0x99 and no error", reason, err)
	}
	in.mu.Lock()
	got := in.got
	in.mu.Unlock()
	if len(got) != 1 || got[0] != "loadwatch/v1/pi1/telemetry ok" {
		t.Fatalf("broker took %q", got)
	}
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(t.Context(), Message{Topic: "loadwatch/v1/pi1/telemetry", Payload: []byte("late"), QoS: 1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("publish after Close: %v", err)
	}
}

func TestRefusedConnect(t *testing.T) {
	_, _, url := startBroker(t)
	_, err := Dial(t.Context(), Config{Broker: url, ClientID: "pi1", Password: "wrong", ConnectTimeout: 5 * time.Second})
	var ce *ConnectError
	if !errors.As(err, &ce) || ce.ReasonCode < 0x80 {
		t.Fatalf("err = %v, want a *ConnectError", err)
	}
}

func TestUnreachable(t *testing.T) {
	_, err := Dial(t.Context(), Config{Broker: "mqtt://127.0.0.1:1", ClientID: "pi1", ConnectTimeout: time.Second})
	if err == nil {
		t.Fatal("connected to port 1")
	}
}

// TestPersistentSession: a command published while the client is away is
// delivered on its next connection (clean start false, session expiry).
func TestPersistentSession(t *testing.T) {
	b, _, url := startBroker(t)
	got := make(chan Message, 4)
	cfg := Config{Broker: url, ClientID: "pi1", Password: "secret", SessionExpiry: time.Hour,
		Subscribe: []string{"loadwatch/v1/pi1/cmd"}, OnMessage: func(m Message) { got <- m }}
	c, err := Dial(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Close(t.Context())
	if err := b.Publish("loadwatch/v1/pi1/cmd", []byte(`queued`), false, 1); err != nil {
		t.Fatal(err)
	}
	c, err = Dial(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(t.Context())
	if !c.SessionPresent() {
		t.Error("the broker did not keep the session")
	}
	if m := waitMsg(t, got, "queued command"); string(m.Payload) != "queued" || m.Topic != "loadwatch/v1/pi1/cmd" {
		t.Fatalf("got %+v", m)
	}
}

// TestWillOnAbort: Abort closes without DISCONNECT, so the broker
// publishes the retained will; Close does not.
func TestWillOnAbort(t *testing.T) {
	_, _, url := startBroker(t)
	wills := make(chan Message, 4)
	obs, err := Dial(t.Context(), Config{Broker: url, ClientID: "admin", Password: "admin", CleanStart: true,
		Subscribe: []string{"loadwatch/v1/+/status"}, OnMessage: func(m Message) { wills <- m }})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close(t.Context())
	will := &Message{Topic: "loadwatch/v1/pi1/status", Payload: []byte(`{"v":1,"state":"offline"}`), QoS: 1, Retain: true}
	c, err := Dial(t.Context(), Config{Broker: url, ClientID: "pi1", Password: "secret", Will: will})
	if err != nil {
		t.Fatal(err)
	}
	c.Close(t.Context())
	select {
	case m := <-wills:
		t.Fatalf("will published after a clean Close: %+v", m)
	case <-time.After(500 * time.Millisecond):
	}
	c, err = Dial(t.Context(), Config{Broker: url, ClientID: "pi1", Password: "secret", Will: will})
	if err != nil {
		t.Fatal(err)
	}
	c.Abort()
	if m := waitMsg(t, wills, "the will"); string(m.Payload) != string(will.Payload) {
		t.Fatalf("will %+v", m)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{Broker: "mqtt://h:1883"},
		{Broker: "http://h:80", ClientID: "a"},
		{Broker: "mqtt://h", ClientID: "a"},
		{Broker: "::", ClientID: "a"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
		if _, err := Dial(context.Background(), c); err == nil {
			t.Errorf("Dial %+v accepted", c)
		}
	}
	if err := (&Config{Broker: "mqtts://h:8883", ClientID: "a"}).Validate(); err != nil {
		t.Error(err)
	}
	dir := t.TempDir()
	if _, err := TLSConfig(filepath.Join(dir, "none.pem"), "h"); err == nil {
		t.Error("missing CA file accepted")
	}
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("not a certificate"), 0o600)
	if _, err := TLSConfig(bad, "h"); err == nil {
		t.Error("CA file without a certificate accepted")
	}
	if _, err := Dial(context.Background(), Config{Broker: "mqtts://127.0.0.1:8883", ClientID: "a", CAFile: bad}); err == nil {
		t.Error("Dial with a bad CA file accepted")
	}
}

func testLog() *slog.Logger {
	if os.Getenv("LOADWATCH_MQTTC_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// writeCA makes a CA and a server certificate for 127.0.0.1, writes the
// CA's PEM to a file and returns the server's TLS config.
func writeCA(t *testing.T) (caFile string, server *tls.Config) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "loadwatch test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "broker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}

func TestTLSWithCAFile(t *testing.T) {
	caFile, srv := writeCA(t)
	b, err := broker.New(broker.Config{TLSAddr: "127.0.0.1:0", TLS: srv, Logger: testLog()}, auth{}, &ingest{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-b.Ready()
	url := "mqtts://" + b.Addr("tls")
	c, err := Dial(t.Context(), Config{Broker: url, ClientID: "pi1", Password: "secret", CAFile: caFile})
	if err != nil {
		t.Fatalf("TLS with the CA file: %v", err)
	}
	if r, err := c.Publish(t.Context(), Message{Topic: "loadwatch/v1/pi1/telemetry", Payload: []byte("x"), QoS: 1}); err != nil || r != 0 {
		t.Fatalf("publish over TLS: %#x %v", r, err)
	}
	c.Close(t.Context())
	if _, err := Dial(t.Context(), Config{Broker: url, ClientID: "pi1", Password: "secret", ConnectTimeout: 3 * time.Second}); err == nil {
		t.Fatal("connected without trusting the broker's CA")
	}
}

func TestBrokerURL(t *testing.T) {
	for _, c := range []struct {
		in  string
		tls bool
		ok  bool
	}{
		{"mqtt://127.0.0.1:1883", false, true},
		{"tcp://broker.lan:1883", false, true},
		{"mqtts://broker.lan:8883", true, true},
		{"tls://[::1]:8883", true, true},
		{"ssl://h:8883", true, true},
		{"mqtt://h", false, false},
		{"ws://h:80", false, false},
		{"h:1883", false, false},
		{"", false, false},
		{"mqtt://:1883", false, false},
	} {
		_, tls, err := brokerURL(c.in)
		if (err == nil) != c.ok || (err == nil && tls != c.tls) {
			t.Errorf("brokerURL(%q): tls %v err %v; want tls %v ok %v", c.in, tls, err, c.tls, c.ok)
		}
	}
}

func FuzzBrokerURL(f *testing.F) {
	for _, s := range []string{"mqtt://127.0.0.1:1883", "mqtts://h:8883", "tls://[::1]:1", "::", "mqtt://:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, _, err := brokerURL(s)
		if err == nil && (u.Hostname() == "" || u.Port() == "") {
			t.Fatalf("%q accepted without host:port", s)
		}
	})
}

func BenchmarkBrokerURL(b *testing.B) {
	for b.Loop() {
		if _, _, err := brokerURL("mqtts://broker.lan:8883"); err != nil {
			b.Fatal(err)
		}
	}
}
