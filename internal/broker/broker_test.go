package broker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"loadwatch/internal/registry"

	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"
)

// recorder is a test Ingester: it records what it accepted and refuses
// payloads listed in refuse with the given reason code.
type recorder struct {
	mu     sync.Mutex
	got    []string // client|topic|payload
	refuse map[string]byte
}

func (r *recorder) Ingest(_ context.Context, clientID, topic string, payload []byte) (byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if code, ok := r.refuse[string(payload)]; ok {
		return code, fmt.Errorf("refused %q", payload)
	}
	r.got = append(r.got, clientID+"|"+topic+"|"+string(payload))
	return 0, nil
}

func (r *recorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

type env struct {
	reg    *registry.Registry
	tokens map[string]string
	admin  string // admin password
	dir    string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	reg, err := registry.Open(ctx, registry.Path(dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	e := &env{reg: reg, tokens: map[string]string{}, dir: dir}
	for _, nd := range []registry.NewDevice{
		{ID: "pi", Addrs: []int{1}},
		{ID: "other"},
		{ID: "tas", TasmotaTopic: "tasmota_AB12", TimeZone: "Europe/Berlin"},
	} {
		_, tok, err := reg.Add(ctx, nd)
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[nd.ID] = tok
	}
	cred, _, err := reg.EnsureAdmin(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, e.admin, err = registry.ReadAdminFile(cred.File); err != nil {
		t.Fatal(err)
	}
	return e
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(&tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tlog struct{ t testing.TB }

func (w *tlog) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// start runs a broker until the test ends (or stop is called) and returns it.
func start(t testing.TB, cfg Config, auth Authenticator, ing Ingester) (b *Broker, stop func()) {
	t.Helper()
	if cfg.TCPAddr == "" && cfg.TLSAddr == "" {
		cfg.TCPAddr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	b, err := New(cfg, auth, ing)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	select {
	case <-b.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("broker did not start: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("broker did not start within 10 s")
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("broker Run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("broker did not stop within 20 s")
			}
		})
	}
	t.Cleanup(stop)
	return b, stop
}

type conn struct {
	c   *paho.Client
	msg chan *paho.Publish
}

type connOpts struct {
	clean  bool
	expiry uint32
	tls    *tls.Config
	ws     bool
}

// dial connects an MQTT 5 client; it returns the CONNACK and the error.
func dial(t testing.TB, addr, clientID, user, pass string, o connOpts) (*conn, *paho.Connack, error) {
	t.Helper()
	var nc net.Conn
	var err error
	switch {
	case o.ws:
		d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 10 * time.Second}
		var wc *websocket.Conn
		wc, _, err = d.Dial("ws://"+addr+"/mqtt", nil)
		if err == nil {
			nc = newWSConn(wc)
		}
	case o.tls != nil:
		nc, err = tls.Dial("tcp", addr, o.tls)
	default:
		nc, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	c := &conn{msg: make(chan *paho.Publish, 100)}
	c.c = paho.NewClient(paho.ClientConfig{
		Conn: nc,
		// Generous: a CI run once starved a TLS publish past paho's
		// default 10 s under the race detector on 2 loaded cores.
		PacketTimeout: ioTimeout,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.msg <- pr.Packet
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	cp := &paho.Connect{
		ClientID: clientID, Username: user, UsernameFlag: true, Password: []byte(pass), PasswordFlag: pass != "",
		CleanStart: o.clean, KeepAlive: 30,
	}
	if o.expiry > 0 {
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &o.expiry}
	}
	ca, err := c.c.Connect(ctx, cp)
	if err == nil {
		t.Cleanup(func() { _ = c.c.Disconnect(&paho.Disconnect{}) })
	}
	return c, ca, err
}

// ioTimeout bounds one MQTT exchange of the test clients: generous, since
// it only matters when something is broken.
const ioTimeout = 30 * time.Second

func mustDial(t testing.TB, addr, id, pass string, o connOpts) *conn {
	t.Helper()
	c, ca, err := dial(t, addr, id, id, pass, o)
	if err != nil {
		t.Fatalf("connect %s: %v (connack %+v)", id, err, ca)
	}
	return c
}

func (c *conn) publish(t testing.TB, topic, payload string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	pr, err := c.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
	if pr == nil {
		t.Fatalf("publish %s: no PUBACK: %v", topic, err)
	}
	return pr.ReasonCode
}

func (c *conn) subscribe(t testing.TB, filter string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	sa, err := c.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if sa == nil || len(sa.Reasons) != 1 {
		t.Fatalf("subscribe %s: %v %+v", filter, err, sa)
	}
	return sa.Reasons[0]
}

func (c *conn) expect(t testing.TB, topic, payload string) {
	t.Helper()
	select {
	case m := <-c.msg:
		if m.Topic != topic || string(m.Payload) != payload {
			t.Fatalf("received %s %q, want %s %q", m.Topic, m.Payload, topic, payload)
		}
	case <-time.After(ioTimeout):
		t.Fatalf("no message on %s within %v", topic, ioTimeout)
	}
}

func TestDevicePublishIngested(t *testing.T) {
	e := newEnv(t)
	rec := &recorder{}
	b, _ := start(t, Config{}, e.reg, rec)
	c := mustDial(t, b.Addr("tcp"), "pi", e.tokens["pi"], connOpts{clean: true})
	for _, topic := range []string{"loadwatch/v1/pi/telemetry", "loadwatch/v1/pi.1/telemetry"} {
		if code := c.publish(t, topic, "ok"); code != 0 {
			t.Fatalf("publish %s: reason %#x", topic, code)
		}
	}
	want := []string{"pi|loadwatch/v1/pi/telemetry|ok", "pi|loadwatch/v1/pi.1/telemetry|ok"}
	if got := rec.seen(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ingested %v, want %v", got, want)
	}
	if s := b.Stats(); s.Ingested != 2 || s.ClientsConnected != 1 {
		t.Fatalf("stats %+v", s)
	}
	if d, _ := e.reg.Get(context.Background(), "pi"); d.LastSeen.IsZero() {
		t.Fatal("last seen not touched")
	}
}

func TestConnectRefused(t *testing.T) {
	e := newEnv(t)
	b, _ := start(t, Config{}, e.reg, &recorder{})
	if err := e.reg.Revoke(context.Background(), "other"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, client, user, pass string }{
		{"wrong password", "pi", "pi", e.tokens["pi"] + "x"},
		{"empty password", "pi", "pi", ""},
		{"unknown user", "ghost", "ghost", e.tokens["pi"]},
		{"another device's token", "pi", "pi", e.tokens["tas"]},
		{"client id is not the user", "tas", "pi", e.tokens["pi"]},
		{"revoked", "other", "other", e.tokens["other"]},
		{"admin with a device's client id", "pi", registry.AdminName, e.admin},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ca, err := dial(t, b.Addr("tcp"), tc.client, tc.user, tc.pass, connOpts{clean: true})
			if err == nil {
				t.Fatal("connected")
			}
			if ca == nil || ca.ReasonCode != 0x86 {
				t.Fatalf("connack %+v, want reason 0x86 (bad user name or password)", ca)
			}
		})
	}
	if s := b.Stats(); s.AuthFailures != 7 {
		t.Fatalf("AuthFailures = %d, want 7", s.AuthFailures)
	}
	mustDial(t, b.Addr("tcp"), registry.AdminName, e.admin, connOpts{clean: true})
	if _, _, err := dial(t, b.Addr("tcp"), registry.AdminName+":ingest", registry.AdminName, e.admin, connOpts{clean: true}); err != nil {
		t.Fatalf("admin with admin:ingest client id: %v", err)
	}
}

func TestACL(t *testing.T) {
	e := newEnv(t)
	rec := &recorder{}
	b, _ := start(t, Config{}, e.reg, rec)
	adm := mustDial(t, b.Addr("tcp"), registry.AdminName, e.admin, connOpts{clean: true})
	if code := adm.subscribe(t, "#"); code != 1 {
		t.Fatalf("admin subscribe #: %#x", code)
	}
	pi := mustDial(t, b.Addr("tcp"), "pi", e.tokens["pi"], connOpts{clean: true})
	for _, topic := range []string{
		"loadwatch/v1/other/telemetry", // another device
		"loadwatch/v1/pi.2/telemetry",  // a meter address it does not have
		"loadwatch/v1/pix/telemetry",
		"loadwatch/v1/pi/cmd", // commands come from the server
		"tele/tasmota_AB12/SENSOR",
		"elsewhere",
	} {
		if code := pi.publish(t, topic, "sneaky"); code != ReasonNotAuthorized {
			t.Errorf("publish %s: reason %#x, want 0x87", topic, code)
		}
	}
	for _, f := range []string{"loadwatch/v1/other/cmd", "loadwatch/v1/+/cmd", "loadwatch/v1/#", "loadwatch/v1/pi/telemetry", "#", "$share/g/loadwatch/v1/pi/cmd"} {
		if code := pi.subscribe(t, f); code != ReasonNotAuthorized {
			t.Errorf("subscribe %s: reason %#x, want 0x87", f, code)
		}
	}
	for _, f := range []string{"loadwatch/v1/pi/cmd", "loadwatch/v1/pi.1/cmd/#"} {
		if code := pi.subscribe(t, f); code != 1 {
			t.Errorf("subscribe %s: reason %#x, want granted QoS 1", f, code)
		}
	}
	tas := mustDial(t, b.Addr("tcp"), "tas", e.tokens["tas"], connOpts{clean: true})
	if code := tas.publish(t, "tele/tasmota_AB12/SENSOR", "{}"); code != 0 {
		t.Errorf("tasmota publish: %#x", code)
	}
	if code := tas.publish(t, "tele/tasmota_XX/SENSOR", "{}"); code != ReasonNotAuthorized {
		t.Errorf("tasmota publish to another topic: %#x", code)
	}
	if got := rec.seen(); len(got) != 1 || got[0] != "tas|tele/tasmota_AB12/SENSOR|{}" {
		t.Fatalf("the ingester saw %v", got)
	}
	// The admin subscriber saw only the accepted message.
	adm.expect(t, "tele/tasmota_AB12/SENSOR", "{}")
	select {
	case m := <-adm.msg:
		t.Fatalf("a refused message was delivered: %s %q", m.Topic, m.Payload)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestRefusedReasonCodes(t *testing.T) {
	e := newEnv(t)
	rec := &recorder{refuse: map[string]byte{"nan": ReasonPayloadInvalid, "full": ReasonQuotaExceeded, "weird": 0x42}}
	b, _ := start(t, Config{}, e.reg, rec)
	adm := mustDial(t, b.Addr("tcp"), registry.AdminName, e.admin, connOpts{clean: true})
	adm.subscribe(t, "loadwatch/v1/#")
	pi := mustDial(t, b.Addr("tcp"), "pi", e.tokens["pi"], connOpts{clean: true})
	for _, tc := range []struct {
		payload string
		want    byte
	}{{"nan", ReasonPayloadInvalid}, {"full", ReasonQuotaExceeded}, {"weird", ReasonUnspecified}, {"good", 0}} {
		if code := pi.publish(t, "loadwatch/v1/pi/telemetry", tc.payload); code != tc.want {
			t.Errorf("payload %q: PUBACK reason %#x, want %#x", tc.payload, code, tc.want)
		}
	}
	adm.expect(t, "loadwatch/v1/pi/telemetry", "good") // refused ones were never delivered
	s := b.Stats()
	if s.Refused[ReasonPayloadInvalid] != 1 || s.Refused[ReasonQuotaExceeded] != 1 || s.Refused[ReasonUnspecified] != 1 || s.Ingested != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestPersistentSessionQueuedCommand(t *testing.T) {
	e := newEnv(t)
	cfg := Config{TCPAddr: "127.0.0.1:0", DataDir: t.TempDir()}
	b, stop := start(t, cfg, e.reg, &recorder{})
	o := connOpts{clean: true, expiry: 3600}
	pi := mustDial(t, b.Addr("tcp"), "pi", e.tokens["pi"], o)
	if code := pi.subscribe(t, "loadwatch/v1/pi/cmd"); code != 1 {
		t.Fatalf("subscribe: %#x", code)
	}
	_ = pi.c.Disconnect(&paho.Disconnect{})
	waitFor(t, "device offline", func() bool { return b.Stats().ClientsConnected == 0 })

	// Asleep: a command is queued and delivered on the next wake.
	if err := b.Publish("loadwatch/v1/pi/cmd", []byte(`{"id":"1","relay":"off"}`), false, 1); err != nil {
		t.Fatal(err)
	}
	o.clean = false
	pi = mustDial(t, b.Addr("tcp"), "pi", e.tokens["pi"], o)
	pi.expect(t, "loadwatch/v1/pi/cmd", `{"id":"1","relay":"off"}`)
	_ = pi.c.Disconnect(&paho.Disconnect{})
	waitFor(t, "device offline", func() bool { return b.Stats().ClientsConnected == 0 })

	// Asleep across a broker restart.
	if err := b.Publish("loadwatch/v1/pi/cmd", []byte(`{"id":"2","relay":"on"}`), false, 1); err != nil {
		t.Fatal(err)
	}
	stop()
	b2, _ := start(t, cfg, e.reg, &recorder{})
	pi = mustDial(t, b2.Addr("tcp"), "pi", e.tokens["pi"], o)
	pi.expect(t, "loadwatch/v1/pi/cmd", `{"id":"2","relay":"on"}`)
	// The subscription survived too: a new command reaches the live session.
	if err := b2.Publish("loadwatch/v1/pi/cmd", []byte(`{"id":"3"}`), false, 1); err != nil {
		t.Fatal(err)
	}
	pi.expect(t, "loadwatch/v1/pi/cmd", `{"id":"3"}`)
	// Asleep again: the ACL judges an offline session by its stored user
	// name, since no live connection has authenticated it.
	_ = pi.c.Disconnect(&paho.Disconnect{})
	waitFor(t, "device offline", func() bool { return b2.Stats().ClientsConnected == 0 })
	if err := b2.Publish("loadwatch/v1/pi/cmd", []byte(`{"id":"4"}`), false, 1); err != nil {
		t.Fatal(err)
	}
	pi = mustDial(t, b2.Addr("tcp"), "pi", e.tokens["pi"], o)
	pi.expect(t, "loadwatch/v1/pi/cmd", `{"id":"4"}`)
	if s := b2.Stats(); s.StoreFailures != 0 {
		t.Fatalf("store failures: %d", s.StoreFailures)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testCA makes a CA and a server certificate for 127.0.0.1.
func testCA(t testing.TB) (server *tls.Config, client *tls.Config) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "loadwatch test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12},
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

func TestTLS(t *testing.T) {
	e := newEnv(t)
	srvTLS, cliTLS := testCA(t)
	rec := &recorder{}
	b, _ := start(t, Config{TLSAddr: "127.0.0.1:0", TLS: srvTLS}, e.reg, rec)
	pi := mustDial(t, b.Addr("tls"), "pi", e.tokens["pi"], connOpts{clean: true, tls: cliTLS})
	if code := pi.publish(t, "loadwatch/v1/pi/telemetry", "over tls"); code != 0 {
		t.Fatalf("publish over TLS: %#x", code)
	}
	if got := rec.seen(); len(got) != 1 {
		t.Fatalf("ingested %v", got)
	}
	// A client that does not trust the CA is refused by the handshake.
	nc, err := tls.Dial("tcp", b.Addr("tls"), &tls.Config{ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	if err == nil {
		nc.Close()
		t.Fatal("TLS handshake succeeded without the CA")
	}
}

func TestWebSocket(t *testing.T) {
	e := newEnv(t)
	rec := &recorder{}
	b, _ := start(t, Config{WSAddr: "127.0.0.1:0"}, e.reg, rec)
	pi := mustDial(t, b.Addr("ws"), "pi", e.tokens["pi"], connOpts{clean: true, ws: true})
	if code := pi.subscribe(t, "loadwatch/v1/pi/cmd"); code != 1 {
		t.Fatalf("subscribe over websocket: %#x", code)
	}
	if code := pi.publish(t, "loadwatch/v1/pi/telemetry", "over ws"); code != 0 {
		t.Fatalf("publish over websocket: %#x", code)
	}
	if err := b.Publish("loadwatch/v1/pi/cmd", []byte("relay off"), false, 1); err != nil {
		t.Fatal(err)
	}
	pi.expect(t, "loadwatch/v1/pi/cmd", "relay off")
	if got := rec.seen(); len(got) != 1 {
		t.Fatalf("ingested %v", got)
	}
	if _, ca, err := dial(t, b.Addr("ws"), "pi", "pi", "wrong", connOpts{clean: true, ws: true}); err == nil || ca == nil || ca.ReasonCode != 0x86 {
		t.Fatalf("wrong password over websocket: %v %+v", err, ca)
	}
}

func TestListenError(t *testing.T) {
	e := newEnv(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, cfg := range []Config{{TCPAddr: taken.Addr().String()}, {WSAddr: taken.Addr().String()}} {
		b, err := New(cfg, e.reg, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := b.Run(ctx); err == nil {
			t.Errorf("Run on a taken address %+v returned nil", cfg)
		}
		cancel()
	}
}

func TestNewErrors(t *testing.T) {
	e := newEnv(t)
	for _, cfg := range []Config{{}, {TLSAddr: "127.0.0.1:0"}} {
		if _, err := New(cfg, e.reg, nil); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	if _, err := New(Config{TCPAddr: "127.0.0.1:0"}, nil, nil); err == nil {
		t.Error("New without authenticator accepted")
	}
}

type countIngester struct{ n atomic.Int64 }

func (c *countIngester) Ingest(context.Context, string, string, []byte) (byte, error) {
	c.n.Add(1)
	return 0, nil
}

func BenchmarkPublishIngest(b *testing.B) {
	e := newEnv(b)
	ing := &countIngester{}
	br, _ := start(b, Config{}, e.reg, ing)
	const workers = 8
	cs := make([]*conn, workers)
	for i := range cs {
		cs[i] = mustDial(b, br.Addr("tcp"), "pi", e.tokens["pi"], connOpts{clean: true})
		if i == 0 {
			// one device id, so one connection; the others take it over.
			break
		}
	}
	payload := []byte(`{"v":1,"epoch":"b","seq":1,"ts":"2026-11-29T12:00:00.000Z","voltage":230.1,"current":0.512,"power":98.4,"energy":1234,"energy_total":5678,"frequency":50,"pf":0.83,"state":"active"}`)
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	var wg sync.WaitGroup
	per := (b.N + workers - 1) / workers
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				pr, err := cs[0].c.Publish(context.Background(), &paho.Publish{Topic: "loadwatch/v1/pi/telemetry", QoS: 1, Payload: payload})
				if err != nil || pr.ReasonCode != 0 {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if got := ing.n.Load(); got != int64(per*workers) {
		b.Fatalf("ingested %d, want %d", got, per*workers)
	}
	b.ReportMetric(float64(per*workers)/b.Elapsed().Seconds(), "msgs/s")
}

func BenchmarkConnect(b *testing.B) {
	e := newEnv(b)
	br, _ := start(b, Config{}, e.reg, nil)
	for b.Loop() {
		c, _, err := dial(b, br.Addr("tcp"), "pi", "pi", e.tokens["pi"], connOpts{clean: true})
		if err != nil {
			b.Fatal(err)
		}
		_ = c.c.Disconnect(&paho.Disconnect{})
	}
}
