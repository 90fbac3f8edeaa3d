package leanmqtt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"loadwatch/internal/broker"
	"loadwatch/internal/registry"
)

// recorder is an inline Ingester: it keeps what it accepted and refuses
// payloads that start with "refuse:" with 0x99.
type recorder struct {
	mu    sync.Mutex
	got   []string
	delay time.Duration
}

func (r *recorder) Ingest(_ context.Context, client, topic string, payload []byte) (byte, error) {
	if r.delay > 0 {
		time.Sleep(r.delay)
	}
	if strings.HasPrefix(string(payload), "refuse:") {
		return broker.ReasonPayloadInvalid, errors.New("refused")
	}
	r.mu.Lock()
	r.got = append(r.got, client+" "+topic+" "+string(payload))
	r.mu.Unlock()
	return 0, nil
}

func (r *recorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

// startBroker runs an embedded broker with devices d1 and d2 and returns
// its address, their tokens and a function that stops it.
func startBroker(t *testing.T, ing broker.Ingester) (addr string, tokens map[string]string, stop func()) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	reg, err := registry.Open(ctx, registry.Path(dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	tokens = map[string]string{}
	for _, id := range []string{"d1", "d2"} {
		_, tok, err := reg.Add(ctx, registry.NewDevice{ID: id})
		if err != nil {
			t.Fatal(err)
		}
		tokens[id] = tok
	}
	b, err := broker.New(broker.Config{TCPAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)}, reg, ing)
	if err != nil {
		t.Fatal(err)
	}
	bctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.Run(bctx) }()
	select {
	case <-b.Ready():
	case err := <-done:
		t.Fatalf("broker: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("broker not ready within 10 s")
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Error("broker did not stop within 20 s")
			}
		})
	}
	t.Cleanup(stop)
	return b.Addr("tcp"), tokens, stop
}

func dial(t *testing.T, addr, id, tok string, window int) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, Options{Addr: addr, ClientID: id, Username: id, Password: tok, CleanStart: true, Window: window})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// acks collects Acks by index.
type acks struct {
	mu  sync.Mutex
	got map[int]Ack
	all chan struct{}
	n   int
}

func newAcks(n int) *acks { return &acks{got: map[int]Ack{}, all: make(chan struct{}), n: n} }

func (a *acks) done(i int) func(Ack) {
	return func(k Ack) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if _, dup := a.got[i]; dup {
			panic(fmt.Sprintf("message %d acknowledged twice", i))
		}
		a.got[i] = k
		if len(a.got) == a.n {
			close(a.all)
		}
	}
}

func (a *acks) wait(t *testing.T) map[int]Ack {
	t.Helper()
	select {
	case <-a.all:
	case <-time.After(20 * time.Second):
		a.mu.Lock()
		t.Fatalf("%d of %d acknowledgements within 20 s", len(a.got), a.n)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.got
}

func TestPublishPipelined(t *testing.T) {
	rec := &recorder{}
	addr, tok, _ := startBroker(t, rec)
	c := dial(t, addr, "d1", tok["d1"], 8)
	if c.Window() != 8 {
		t.Errorf("window %d, want 8 (broker's receive maximum is larger)", c.Window())
	}
	const n = 500
	a := newAcks(n)
	ctx := context.Background()
	for i := range n {
		if err := c.Publish(ctx, "loadwatch/v1/d1/telemetry", fmt.Appendf(nil, "m%03d", i), a.done(i)); err != nil {
			t.Fatal(err)
		}
		if f := c.InFlight(); f > 8 {
			t.Fatalf("%d in flight, window 8", f)
		}
	}
	for i, k := range a.wait(t) {
		if k.Err != nil || k.Reason != 0 || k.RTT <= 0 {
			t.Errorf("message %d: %+v", i, k)
		}
	}
	got := rec.seen()
	if len(got) != n {
		t.Fatalf("broker ingested %d, want %d", len(got), n)
	}
	for i, s := range got { // one connection: the broker ingests in order
		if want := fmt.Sprintf("d1 loadwatch/v1/d1/telemetry m%03d", i); s != want {
			t.Fatalf("ingested[%d] = %q, want %q", i, s, want)
		}
	}
}

func TestPublishRefusals(t *testing.T) {
	addr, tok, _ := startBroker(t, &recorder{})
	c := dial(t, addr, "d1", tok["d1"], 4)
	a := newAcks(3)
	ctx := context.Background()
	for i, m := range []struct{ topic, payload string }{
		{"loadwatch/v1/d1/telemetry", "refuse:bad"},
		{"loadwatch/v1/d2/telemetry", "another device's topic"},
		{"loadwatch/v1/d1/telemetry", "fine"},
	} {
		if err := c.Publish(ctx, m.topic, []byte(m.payload), a.done(i)); err != nil {
			t.Fatal(err)
		}
	}
	got := a.wait(t)
	for i, want := range []byte{0x99, 0x87, 0} {
		if got[i].Err != nil || got[i].Reason != want {
			t.Errorf("message %d: %+v, want reason 0x%02x", i, got[i], want)
		}
	}
}

func TestDialRefused(t *testing.T) {
	addr, _, _ := startBroker(t, &recorder{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Dial(ctx, Options{Addr: addr, ClientID: "d1", Username: "d1", Password: "wrong", CleanStart: true})
	var ce *ConnectError
	if !errors.As(err, &ce) || ce.Reason != 0x86 {
		t.Fatalf("err = %v, want a ConnectError 0x86", err)
	}
}

func TestConnectionLost(t *testing.T) {
	rec := &recorder{delay: 50 * time.Millisecond}
	addr, tok, stop := startBroker(t, rec)
	c := dial(t, addr, "d1", tok["d1"], 16)
	const n = 16
	a := newAcks(n)
	for i := range n {
		if err := c.Publish(context.Background(), "loadwatch/v1/d1/telemetry", []byte("x"), a.done(i)); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	acked, lost := 0, 0
	for _, k := range a.wait(t) {
		switch {
		case k.Err != nil:
			lost++
		case k.Reason == 0:
			acked++
		}
	}
	if acked+lost != n || lost == 0 {
		t.Errorf("%d acknowledged, %d lost of %d; want every message reported and some lost", acked, lost, n)
	}
	if acked > len(rec.seen()) {
		t.Errorf("%d acknowledged but the broker ingested %d", acked, len(rec.seen()))
	}
	<-c.Done()
	if err := c.Publish(context.Background(), "loadwatch/v1/d1/telemetry", []byte("x"), func(Ack) { t.Error("done called after a refused Publish") }); err == nil {
		t.Error("Publish on a closed connection succeeded")
	}
}

// fakeServer accepts one connection on a pipe, answers CONNECT with
// connack and then runs serve.
func fakeServer(t testing.TB, connack []byte, serve func(net.Conn)) *Conn {
	t.Helper()
	cl, sv := net.Pipe()
	go func() {
		defer sv.Close()
		if _, _, err := ReadPacket(sv, nil, 0); err != nil {
			return
		}
		sv.Write(connack)
		serve(sv)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, Options{Addr: "pipe", Dialer: pipeDialer{cl}, Window: 64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Abort() })
	return c
}

type pipeDialer struct{ c net.Conn }

func (p pipeDialer) DialContext(context.Context, string, string) (net.Conn, error) { return p.c, nil }

func TestServerWindowAndDisconnect(t *testing.T) {
	// Receive Maximum 2; the server answers the first two PUBLISHes only
	// after both arrived, then sends DISCONNECT 0x8b (server shutting down).
	c := fakeServer(t, []byte{0x20, 6, 0, 0, 3, 0x21, 0, 2}, func(sv net.Conn) {
		var ids []uint16
		for len(ids) < 2 {
			h, body, err := ReadPacket(sv, nil, 0)
			if err != nil || h.Type != TypePublish {
				return
			}
			n := int(body[0])<<8 | int(body[1])
			ids = append(ids, uint16(body[2+n])<<8|uint16(body[3+n]))
		}
		for _, id := range ids {
			sv.Write(AppendPuback(nil, id, 0))
		}
		sv.Write([]byte{0xe0, 1, 0x8b})
		io.Copy(io.Discard, sv)
	})
	if c.Window() != 2 {
		t.Fatalf("window %d, want the server's receive maximum 2", c.Window())
	}
	a := newAcks(2)
	for i := range 2 {
		if err := c.Publish(context.Background(), "t", []byte("x"), a.done(i)); err != nil {
			t.Fatal(err)
		}
	}
	for i, k := range a.wait(t) {
		if k.Err != nil || k.Reason != 0 {
			t.Errorf("message %d: %+v", i, k)
		}
	}
	<-c.Done()
	var de *DisconnectError
	if err := c.Err(); !errors.As(err, &de) || de.Reason != 0x8b {
		t.Errorf("Err = %v, want DisconnectError 0x8b", err)
	}
}

func TestPublishWaitsForWindow(t *testing.T) {
	c := fakeServer(t, []byte{0x20, 6, 0, 0, 3, 0x21, 0, 1}, func(sv net.Conn) { io.Copy(io.Discard, sv) })
	if err := c.Publish(context.Background(), "t", []byte("x"), func(Ack) {}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := c.Publish(ctx, "t", []byte("y"), func(Ack) { t.Error("done called for a publish that was not sent") })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the context's deadline (window full)", err)
	}
}

func BenchmarkPublishFake(b *testing.B) {
	c := fakeServer(b, []byte{0x20, 3, 0, 0, 0}, func(sv net.Conn) {
		buf := make([]byte, 1024)
		for {
			h, body, err := ReadPacket(sv, buf, 0)
			if err != nil || h.Type != TypePublish {
				return
			}
			n := int(body[0])<<8 | int(body[1])
			if _, err := sv.Write(AppendPuback(nil, uint16(body[2+n])<<8|uint16(body[3+n]), 0)); err != nil {
				return
			}
		}
	})
	defer c.Abort()
	payload := make([]byte, 300)
	var wg sync.WaitGroup
	b.ReportAllocs()
	for b.Loop() {
		wg.Add(1)
		if err := c.Publish(context.Background(), "loadwatch/v1/d/telemetry", payload, func(Ack) { wg.Done() }); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
}
