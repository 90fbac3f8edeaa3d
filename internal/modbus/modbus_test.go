package modbus

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCRC16CheckValue(t *testing.T) {
	// The catalogue check value of CRC-16/MODBUS.
	if got := CRC16([]byte("123456789")); got != 0x4B37 {
		t.Fatalf("CRC16(123456789) = %04X, want 4B37", got)
	}
}

// Frames as the PZEM-004T documentation gives them.
func TestEncodeDatasheetFrames(t *testing.T) {
	tests := []struct {
		name string
		f    Frame
		wire string
	}{
		{"read ten input registers of 0x01", ReadRequest(1, FuncReadInput, 0, 10), "01 04 00 00 00 0A 70 0D"},
		{"reset energy of 0x01", Frame{Addr: 1, Func: FuncResetEnergy}, "01 42 80 11"},
		{"calibrate via general address", Frame{Addr: AddrGeneral, Func: FuncCalibrate, Data: []byte{0x37, 0x21}}, "F8 41 37 21 B7 78"},
		{"set address to 1 via 0xF8", WriteSingleRequest(AddrGeneral, 2, 1), "F8 06 00 02 00 01 FD A3"},
		{"read both holding registers", ReadRequest(1, FuncReadHolding, 1, 2), "01 03 00 01 00 02 95 CB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := unhex(t, tt.wire)
			got := Encode(tt.f)
			if !bytes.Equal(got, want) {
				t.Fatalf("Encode = % X, want % X", got, want)
			}
			f, err := Decode(want)
			if err != nil {
				t.Fatal(err)
			}
			if f.Addr != tt.f.Addr || f.Func != tt.f.Func || !bytes.Equal(f.Data, tt.f.Data) {
				t.Fatalf("Decode = %+v, want %+v", f, tt.f)
			}
			if RequestLen(want) != len(want) {
				t.Fatalf("RequestLen = %d, want %d", RequestLen(want), len(want))
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		wire []byte
		want error
	}{
		{"empty", nil, ErrShortFrame},
		{"three bytes", []byte{1, 4, 0}, ErrShortFrame},
		{"bad CRC", unhex(t, "01 04 00 00 00 0A 70 0E"), ErrCRC},
		{"slipped byte", unhex(t, "00 01 04 00 00 00 0A 70"), ErrCRC},
		{"too long", make([]byte, 300), ErrFrameTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.wire)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode error = %v, want %v", err, tt.want)
			}
		})
	}
	var ce *CRCError
	if _, err := Decode(unhex(t, "01 04 00 00 00 0A 70 0E")); !errors.As(err, &ce) || ce.Want != 0x0D70 || ce.Got != 0x0E70 {
		t.Fatalf("CRCError = %+v", ce)
	}
}

func TestExceptionReply(t *testing.T) {
	wire := Encode(Exception(3, FuncReadInput, IllegalAddress))
	if len(wire) != 5 || ReplyLen(wire) != 5 {
		t.Fatalf("exception reply % X: length %d, ReplyLen %d", wire, len(wire), ReplyLen(wire))
	}
	f, err := Decode(wire)
	if err != nil {
		t.Fatal(err)
	}
	var ex *ExceptionError
	if !errors.As(f.Err(), &ex) {
		t.Fatalf("Err() = %v, want *ExceptionError", f.Err())
	}
	if ex.Addr != 3 || ex.Func != FuncReadInput || ex.Code != IllegalAddress {
		t.Fatalf("exception = %+v", ex)
	}
	if !strings.Contains(ex.Error(), "illegal data address") {
		t.Fatalf("message %q does not name the code", ex.Error())
	}
	if _, err := ParseReadReply(f, 10); !errors.As(err, &ex) {
		t.Fatalf("ParseReadReply of an exception = %v", err)
	}
}

func TestReadReplyRoundTrip(t *testing.T) {
	regs := []uint16{0x08FC, 0x01F4, 0, 0x0456, 0, 0x1234, 0x0001, 0x01F4, 0x005A, 0}
	wire := Encode(ReadReply(1, FuncReadInput, regs))
	if len(wire) != 25 || !bytes.Equal(wire[:3], []byte{1, 4, 0x14}) {
		t.Fatalf("reply % X: want 25 bytes starting 01 04 14", wire)
	}
	if ReplyLen(wire[:3]) != 25 || ReplyLen(wire[:2]) != 0 {
		t.Fatalf("ReplyLen wrong")
	}
	f, err := Decode(wire)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseReadReply(f, 10)
	if err != nil {
		t.Fatal(err)
	}
	for i := range regs {
		if got[i] != regs[i] {
			t.Fatalf("reg %d = %04X, want %04X", i, got[i], regs[i])
		}
	}
	if _, err := ParseReadReply(f, 2); !errors.Is(err, ErrUnexpectedReply) {
		t.Fatalf("count mismatch: %v", err)
	}
	bad := Frame{Addr: 1, Func: 4, Data: []byte{4, 1, 2}}
	if _, err := ParseReadReply(bad, 2); !errors.Is(err, ErrUnexpectedReply) {
		t.Fatalf("byte count mismatch: %v", err)
	}
}

// fakePort answers each written request with whatever reply returns.
type fakePort struct {
	mu     sync.Mutex
	in     []byte
	writes [][]byte
	reply  func(req []byte) []byte
	to     time.Duration
}

func (p *fakePort) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.writes = append(p.writes, append([]byte(nil), b...))
	p.in = append(p.in, p.reply(b)...)
	return len(b), nil
}

func (p *fakePort) Read(b []byte) (int, error) {
	p.mu.Lock()
	if len(p.in) == 0 {
		to := p.to
		p.mu.Unlock()
		time.Sleep(to)
		return 0, nil
	}
	n := copy(b, p.in)
	p.in = p.in[n:]
	p.mu.Unlock()
	return n, nil
}

func (p *fakePort) SetReadTimeout(d time.Duration) error { p.to = d; return nil }
func (p *fakePort) ResetInputBuffer() error {
	p.mu.Lock()
	p.in = nil
	p.mu.Unlock()
	return nil
}

func TestTransportExchange(t *testing.T) {
	good := Encode(ReadReply(1, FuncReadInput, make([]uint16, 10)))
	corrupt := append([]byte(nil), good...)
	corrupt[10] ^= 0xFF
	tests := []struct {
		name    string
		reply   []byte
		wantErr error
		skipped int
	}{
		{"clean", good, nil, 0},
		{"slipped leading byte", append([]byte{0x00}, good...), nil, 1},
		{"garbage then reply", append([]byte{0x01, 0x01, 0xFF, 0x04}, good...), nil, 4},
		{"reply from other address then ours", append(Encode(ReadReply(2, FuncReadInput, make([]uint16, 10))), good...), nil, 25},
		{"exception", Encode(Exception(1, FuncReadInput, SlaveDeviceFailure)), nil, 0},
		{"corrupt CRC", corrupt, ErrCRC, 25},
		{"short frame", good[:12], ErrShortFrame, 12},
		{"silence", nil, ErrTimeout, 0},
		{"wrong address only", Encode(ReadReply(2, FuncReadInput, make([]uint16, 10))), ErrShortFrame, 25},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := &fakePort{reply: func([]byte) []byte { return tt.reply }}
				tr := NewTransport(p, 0, 0)
				ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
				defer cancel()
				f, info, err := tr.Exchange(ctx, ReadRequest(1, FuncReadInput, 0, 10))
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if info.Skipped != tt.skipped {
					t.Fatalf("skipped = %d, want %d", info.Skipped, tt.skipped)
				}
				if err == nil && f.Addr != 1 {
					t.Fatalf("reply from %d", f.Addr)
				}
				if !bytes.Equal(p.writes[0], unhex(t, "01 04 00 00 00 0A 70 0D")) {
					t.Fatalf("request % X", p.writes[0])
				}
			})
		})
	}
}

func TestTransportGapAndCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &fakePort{reply: func(req []byte) []byte { return req }} // echo
		tr := NewTransport(p, 0, 0)
		req := WriteSingleRequest(1, 1, 100)
		start := time.Now()
		for range 3 {
			if _, _, err := tr.Exchange(t.Context(), req); err != nil {
				t.Fatal(err)
			}
		}
		if el := time.Since(start); el < 2*DefaultGap {
			t.Fatalf("three exchanges took %v: the 3.5-character gap was not kept", el)
		}
		ctx, cancel := context.WithCancel(t.Context())
		p.reply = func([]byte) []byte { return nil }
		go func() { time.Sleep(100 * time.Millisecond); cancel() }()
		if _, _, err := tr.Exchange(ctx, req); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled exchange: %v", err)
		}
	})
}

func FuzzDecode(f *testing.F) {
	f.Add(unhex(f, "01 04 00 00 00 0A 70 0D"))
	f.Add(Encode(ReadReply(1, FuncReadInput, make([]uint16, 10))))
	f.Add(Encode(Exception(1, 4, 2)))
	f.Add([]byte{1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := Decode(b)
		if err != nil {
			return
		}
		if again := Encode(fr); !bytes.Equal(again, b) {
			t.Fatalf("round trip % X -> % X", b, again)
		}
		_ = fr.Err()
		_, _ = ParseReadReply(fr, 10)
		_, _, _ = ParseReadRequest(fr)
		_, _, _ = ParseWriteSingle(fr)
		_ = ReplyLen(b)
		_ = RequestLen(b)
	})
}

func FuzzTransportResync(f *testing.F) {
	f.Add([]byte{0x00}, []byte{})
	f.Add([]byte{0x01, 0x04, 0x14}, []byte{0xFF})
	f.Fuzz(func(t *testing.T, before, after []byte) {
		if len(before) > 200 || len(after) > 200 {
			return
		}
		regs := []uint16{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
		good := Encode(ReadReply(1, FuncReadInput, regs))
		stream := append(append(append([]byte(nil), before...), good...), after...)
		synctest.Test(t, func(t *testing.T) {
			p := &fakePort{reply: func([]byte) []byte { return stream }}
			tr := NewTransport(p, 0, 0)
			ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
			defer cancel()
			fr, _, err := tr.Exchange(ctx, ReadRequest(1, FuncReadInput, 0, 10))
			if err != nil {
				return // garbage may itself look like a reply start; no panic is the point
			}
			if fr.Err() == nil {
				if _, err := ParseReadReply(fr, 10); err != nil && !errors.Is(err, ErrUnexpectedReply) {
					t.Fatal(err)
				}
			}
		})
	})
}

func BenchmarkEncodeRead(b *testing.B) {
	req := ReadRequest(1, FuncReadInput, 0, 10)
	buf := make([]byte, 0, 16)
	for b.Loop() {
		buf = Append(buf[:0], req)
	}
}

func BenchmarkDecodeReply(b *testing.B) {
	wire := Encode(ReadReply(1, FuncReadInput, []uint16{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}))
	for b.Loop() {
		f, err := Decode(wire)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ParseReadReply(f, 10); err != nil {
			b.Fatal(err)
		}
	}
}

// A bad CRC followed by line noise is still reported as a CRC error.
func TestTransportCRCThenNoise(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		good := Encode(ReadReply(1, FuncReadInput, make([]uint16, 10)))
		good[len(good)-1] ^= 1
		p := &fakePort{reply: func([]byte) []byte { return good }}
		tr := NewTransport(p, 0, 0)
		go func() {
			time.Sleep(10 * time.Millisecond)
			p.mu.Lock()
			p.in = append(p.in, 0xFF, 0x00)
			p.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		if _, _, err := tr.Exchange(ctx, ReadRequest(1, FuncReadInput, 0, 10)); !errors.Is(err, ErrCRC) {
			t.Fatalf("err = %v, want ErrCRC", err)
		}
	})
}
