package leanmqtt

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestDecodeConnack(t *testing.T) {
	for _, tc := range []struct {
		name string
		body []byte
		want Connack
		err  bool
	}{
		{"accepted, no properties", []byte{0, 0, 0}, Connack{}, false},
		{"3.1.1 form", []byte{1, 0}, Connack{SessionPresent: true}, false},
		{"receive maximum", []byte{0, 0, 3, 0x21, 0, 10}, Connack{Props: Properties{ReceiveMaximum: 10}}, false},
		{"refused with reason string", []byte{0, 0x86, 6, 0x1F, 0, 3, 'b', 'a', 'd'}, Connack{Reason: 0x86, Props: Properties{ReasonString: "bad"}}, false},
		{"several properties", []byte{0, 0, 13, 0x27, 0, 1, 0, 0, 0x22, 0, 5, 0x26, 0, 0, 0, 0}, Connack{Props: Properties{MaximumPacketSize: 65536, TopicAliasMaximum: 5}}, false},
		{"too short", []byte{0}, Connack{}, true},
		{"bad flags", []byte{2, 0, 0}, Connack{}, true},
		{"truncated properties", []byte{0, 0, 5, 0x21, 0}, Connack{}, true},
		{"unknown property", []byte{0, 0, 2, 0x7f, 0}, Connack{}, true},
		{"receive maximum 0", []byte{0, 0, 3, 0x21, 0, 0}, Connack{}, true},
		{"trailing bytes", []byte{0, 0, 0, 9}, Connack{}, true},
		{"varint too long", []byte{0, 0, 0x80, 0x80, 0x80, 0x80, 1}, Connack{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeConnack(tc.body)
			if tc.err {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestDecodePuback(t *testing.T) {
	for _, tc := range []struct {
		name string
		body []byte
		want Puback
		err  bool
	}{
		{"short success", []byte{0, 7}, Puback{PacketID: 7}, false},
		{"reason only", []byte{1, 2, 0x99}, Puback{PacketID: 258, Reason: 0x99}, false},
		{"reason and properties", []byte{0, 1, 0x87, 4, 0x1F, 0, 1, 'x'}, Puback{PacketID: 1, Reason: 0x87, Props: Properties{ReasonString: "x"}}, false},
		{"packet id 0", []byte{0, 0}, Puback{}, true},
		{"one byte", []byte{1}, Puback{}, true},
		{"properties overrun", []byte{0, 1, 0, 9, 0x1F}, Puback{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodePuback(tc.body)
			if tc.err {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestReadPacket(t *testing.T) {
	pub := AppendPublish(nil, "loadwatch/v1/a/telemetry", 513, bytes.Repeat([]byte{'x'}, 300), true)
	h, body, err := ReadPacket(bytes.NewReader(pub), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if h.Type != TypePublish || h.Flags != 0x0a || h.Len != len(pub)-3 { // 300+ bytes: 2-byte length
		t.Fatalf("header %+v (packet %d bytes)", h, len(pub))
	}
	if want := append(append([]byte{0, 24}, "loadwatch/v1/a/telemetry"...), 2, 1, 0); !bytes.HasPrefix(body, want) {
		t.Errorf("body starts % x, want % x", body[:30], want)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, io.EOF},
		{"no length", []byte{0x40}, io.ErrUnexpectedEOF},
		{"short body", []byte{0x40, 2, 0}, io.ErrUnexpectedEOF},
		{"length too long", []byte{0x40, 0xff, 0xff, 0xff, 0xff, 1}, ErrMalformed},
		{"over the limit", []byte{0x30, 0xff, 0xff, 0x7f}, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := ReadPacket(bytes.NewReader(tc.in), nil, 0); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestAppendConnect(t *testing.T) {
	b, err := AppendConnect(nil, &Connect{ClientID: "dev1", Username: "dev1", Password: []byte("tok"), CleanStart: true, SessionExpiry: 60})
	if err != nil {
		t.Fatal(err)
	}
	h, body, err := ReadPacket(bytes.NewReader(b), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0, 4, 'M', 'Q', 'T', 'T', 5, 0xc2, 0, 0, 10, 0x11, 0, 0, 0, 60, 0x27, 0, 1, 0, 0,
		0, 4, 'd', 'e', 'v', '1', 0, 4, 'd', 'e', 'v', '1', 0, 3, 't', 'o', 'k'}
	if h.Type != TypeConnect || !bytes.Equal(body, want) {
		t.Errorf("CONNECT\n got % x\nwant % x", body, want)
	}
	if _, err := AppendConnect(nil, &Connect{ClientID: string(make([]byte, 70000))}); err == nil {
		t.Error("a 70000-byte client id was accepted")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte{0x20, 3, 0, 0, 0})
	f.Add([]byte{0x20, 6, 0, 0, 3, 0x21, 0, 10})
	f.Add([]byte{0x40, 2, 0, 7})
	f.Add([]byte{0x40, 8, 0, 1, 0x87, 4, 0x1F, 0, 1, 'x'})
	f.Add([]byte{0xe0, 1, 0x8b})
	f.Add([]byte{0x40, 12, 0, 1, 0, 8, 0x26, 0, 1, 'k', 0, 1, 'v', 0x0b})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, body, err := ReadPacket(bytes.NewReader(data), nil, 4096)
		if err != nil {
			return
		}
		if len(body) != h.Len {
			t.Fatalf("body %d bytes, header says %d", len(body), h.Len)
		}
		switch h.Type {
		case TypeConnack:
			if c, err := DecodeConnack(body); err == nil && len(body) >= 2 && c.Reason != body[1] {
				t.Fatalf("reason %x from body % x", c.Reason, body)
			}
		case TypePuback:
			a, err := DecodePuback(body)
			if err != nil {
				return
			}
			// Re-encode the short forms and decode them again.
			again, err := DecodePuback(AppendPuback(nil, a.PacketID, a.Reason)[2:])
			if err != nil || again.PacketID != a.PacketID || again.Reason != a.Reason {
				t.Fatalf("round trip of %+v: %+v, %v", a, again, err)
			}
		case TypeDisconnect:
			_, _ = DecodeDisconnect(body)
		}
	})
}

func BenchmarkAppendPublish(b *testing.B) {
	payload := bytes.Repeat([]byte{'x'}, 300)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		buf = AppendPublish(buf[:0], "loadwatch/v1/dev-00001/telemetry", uint16(i|1), payload, false)
	}
}

func BenchmarkDecodePuback(b *testing.B) {
	pkt := AppendPuback(nil, 77, 0x99)
	r := bytes.NewReader(pkt)
	buf := make([]byte, 16)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(pkt)
		_, body, err := ReadPacket(r, buf, 0)
		if err != nil {
			b.Fatal(err)
		}
		if a, err := DecodePuback(body); err != nil || a.Reason != 0x99 {
			b.Fatal(a, err)
		}
	}
}
