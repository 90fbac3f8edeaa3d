package broker

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"loadwatch/internal/registry"
)

// A minimal MQTT 3.1.1 client written against the spec, so the broker's
// 3.1.1 behaviour (no reason codes in PUBACK) is tested on the wire.

func mqttString(s string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(s))), s...)
}

func mqttPacket(typeFlags byte, body []byte) []byte {
	out := []byte{typeFlags}
	n := len(body)
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			break
		}
	}
	return append(out, body...)
}

type v311 struct {
	nc net.Conn
	r  *bufio.Reader
}

// readPacket returns the next packet's first byte and body.
func (c *v311) readPacket(t *testing.T) (byte, []byte, error) {
	t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	h, err := c.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	var n, mul int = 0, 1
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(b&0x7f) * mul
		mul *= 128
		if b&0x80 == 0 {
			break
		}
	}
	body := make([]byte, n)
	_, err = io.ReadFull(c.r, body)
	return h, body, err
}

func dial311(t *testing.T, addr, id, pass string) (*v311, byte) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	body := append(mqttString("MQTT"), 4, 0xC2, 0, 60) // level 4, user+password+clean session, keep-alive 60 s
	body = append(body, mqttString(id)...)
	body = append(body, mqttString(id)...)
	body = append(body, mqttString(pass)...)
	if _, err := nc.Write(mqttPacket(0x10, body)); err != nil {
		t.Fatal(err)
	}
	c := &v311{nc: nc, r: bufio.NewReader(nc)}
	h, b, err := c.readPacket(t)
	if err != nil || h != 0x20 || len(b) != 2 {
		t.Fatalf("CONNACK: %#x %v %v", h, b, err)
	}
	return c, b[1]
}

// publish1 sends a QoS 1 PUBLISH and returns the PUBACK's packet id, or the
// read error if the broker closed the connection instead.
func (c *v311) publish1(t *testing.T, id uint16, topic, payload string) (uint16, error) {
	t.Helper()
	body := binary.BigEndian.AppendUint16(mqttString(topic), id)
	if _, err := c.nc.Write(mqttPacket(0x32, append(body, payload...))); err != nil {
		return 0, err
	}
	h, b, err := c.readPacket(t)
	if err != nil {
		return 0, err
	}
	if h != 0x40 || len(b) != 2 {
		t.Fatalf("want PUBACK, got %#x %v", h, b)
	}
	return binary.BigEndian.Uint16(b), nil
}

func TestMQTT311(t *testing.T) {
	e := newEnv(t)
	rec := &recorder{refuse: map[string]byte{"nan": ReasonPayloadInvalid, "full": ReasonQuotaExceeded}}
	b, _ := start(t, Config{}, e.reg, rec)
	adm := mustDial(t, b.Addr("tcp"), registry.AdminName, e.admin, connOpts{clean: true})
	adm.subscribe(t, "loadwatch/v1/#")

	// mochi maps MQTT 5's 0x86 to 3.1.1's return code 5 (not authorised)
	// rather than 4 (bad user name or password); both refuse.
	if _, rc := dial311(t, b.Addr("tcp"), "pi", "wrong"); rc != 0x05 {
		t.Fatalf("3.1.1 wrong password: CONNACK return code %#x, want 0x05", rc)
	}
	c, rc := dial311(t, b.Addr("tcp"), "pi", e.tokens["pi"])
	if rc != 0 {
		t.Fatalf("3.1.1 connect: return code %#x", rc)
	}
	if id, err := c.publish1(t, 7, "loadwatch/v1/pi/telemetry", "good"); err != nil || id != 7 {
		t.Fatalf("good reading: %d %v", id, err)
	}
	// A permanently invalid reading is acknowledged (3.1.1 cannot say no)
	// but discarded: not ingested, not delivered.
	if id, err := c.publish1(t, 8, "loadwatch/v1/pi/telemetry", "nan"); err != nil || id != 8 {
		t.Fatalf("invalid reading: %d %v", id, err)
	}
	adm.expect(t, "loadwatch/v1/pi/telemetry", "good")
	// A retryable refusal closes the connection without a PUBACK, so the
	// client keeps the reading and resends it after reconnecting.
	_, err := c.publish1(t, 9, "loadwatch/v1/pi/telemetry", "full")
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		var ne net.Error
		if !errors.As(err, &ne) || ne.Timeout() {
			t.Fatalf("retryable refusal: got %v, want the connection closed", err)
		}
	}
	if got := rec.seen(); len(got) != 1 {
		t.Fatalf("ingested %v, want only the good reading", got)
	}
	select {
	case m := <-adm.msg:
		t.Fatalf("a refused reading was delivered: %q", m.Payload)
	case <-time.After(200 * time.Millisecond):
	}
}
