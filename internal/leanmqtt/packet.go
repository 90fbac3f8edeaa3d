// Package leanmqtt is a lean MQTT v5 client that only publishes at QoS 1,
// for load generation: CONNECT with user name and password, PUBLISH with
// packet ids, PUBACK with reason codes, and a pipelined in-flight window
// bounded by the server's Receive Maximum.
//
// A connection costs a socket, one reader goroutine, a 512-byte read
// buffer, a write buffer the size of the largest packet sent and a small
// map of in-flight packets: a few KB, where a full-featured client costs
// about 1 MB. It does not subscribe, does not keep a session across
// connections and sends no keep-alive pings (Keep Alive 0): a caller that
// wants a message resent after a lost connection publishes it again.
//
// It imports only the standard library. The packet decoder (ReadPacket,
// DecodeConnack, DecodePuback, DecodeDisconnect) takes bytes from the
// network and is fuzz-tested.
package leanmqtt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Packet types (the high nibble of the first byte).
const (
	TypeConnect    byte = 1
	TypeConnack    byte = 2
	TypePublish    byte = 3
	TypePuback     byte = 4
	TypePingreq    byte = 12
	TypePingresp   byte = 13
	TypeDisconnect byte = 14
	TypeAuth       byte = 15
)

// MaxPacket is the largest packet ReadPacket accepts (what this client
// announces as its Maximum Packet Size).
const MaxPacket = 64 << 10

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("leanmqtt: malformed packet")

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, a...)...)
}

// Header is a packet's fixed header.
type Header struct {
	Type  byte // high nibble
	Flags byte // low nibble
	Len   int  // remaining length
}

// appendVarint appends an MQTT variable byte integer (v < 268,435,456).
func appendVarint(b []byte, v int) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v > 0 {
			c |= 0x80
		}
		b = append(b, c)
		if v == 0 {
			return b
		}
	}
}

// varint decodes a variable byte integer from b: its value and length.
func varint(b []byte) (int, int, error) {
	v, mul := 0, 1
	for i := 0; i < 4; i++ {
		if i >= len(b) {
			return 0, 0, malformed("truncated variable byte integer")
		}
		v += int(b[i]&0x7f) * mul
		if b[i]&0x80 == 0 {
			return v, i + 1, nil
		}
		mul <<= 7
	}
	return 0, 0, malformed("variable byte integer longer than 4 bytes")
}

// ReadPacket reads one packet from r. buf is reused for the body when it is
// large enough; the returned body aliases it. A remaining length over max
// (MaxPacket when max <= 0) is an error.
func ReadPacket(r io.Reader, buf []byte, max int) (Header, []byte, error) {
	if max <= 0 {
		max = MaxPacket
	}
	var one [1]byte
	if _, err := io.ReadFull(r, one[:]); err != nil {
		return Header{}, nil, err
	}
	h := Header{Type: one[0] >> 4, Flags: one[0] & 0x0f}
	mul := 1
	for i := 0; ; i++ {
		if i == 4 {
			return h, nil, malformed("remaining length longer than 4 bytes")
		}
		if _, err := io.ReadFull(r, one[:]); err != nil {
			return h, nil, noEOF(err)
		}
		h.Len += int(one[0]&0x7f) * mul
		if one[0]&0x80 == 0 {
			break
		}
		mul <<= 7
	}
	if h.Len > max {
		return h, nil, malformed("packet of %d bytes over the limit of %d", h.Len, max)
	}
	if cap(buf) < h.Len {
		buf = make([]byte, h.Len)
	}
	body := buf[:h.Len]
	if _, err := io.ReadFull(r, body); err != nil {
		return h, nil, noEOF(err)
	}
	return h, body, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Properties holds the MQTT 5 properties this client uses; others are
// checked for well-formedness and skipped.
type Properties struct {
	ReceiveMaximum    uint16 // 0x21; 0 when absent
	MaximumPacketSize uint32 // 0x27; 0 when absent
	TopicAliasMaximum uint16 // 0x22
	ReasonString      string // 0x1F
	AssignedClientID  string // 0x12
	SessionExpiry     uint32 // 0x11
	HasSessionExpiry  bool
}

// decodeProperties decodes a property block (length prefix included) at
// the start of b and returns the properties and the bytes used.
func decodeProperties(b []byte) (Properties, int, error) {
	var p Properties
	n, w, err := varint(b)
	if err != nil {
		return p, 0, err
	}
	if n > len(b)-w {
		return p, 0, malformed("properties of %d bytes in %d", n, len(b)-w)
	}
	rest := b[w : w+n]
	for len(rest) > 0 {
		id := rest[0]
		rest = rest[1:]
		var size int
		switch id {
		case 0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A: // byte
			size = 1
		case 0x13, 0x21, 0x22, 0x23: // two-byte integer
			size = 2
		case 0x02, 0x11, 0x18, 0x27: // four-byte integer
			size = 4
		case 0x0B: // variable byte integer
			_, vw, err := varint(rest)
			if err != nil {
				return p, 0, err
			}
			size = vw
		case 0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F, 0x09, 0x16: // string or binary data
			if len(rest) < 2 {
				return p, 0, malformed("truncated property 0x%02x", id)
			}
			size = 2 + int(binary.BigEndian.Uint16(rest))
		case 0x26: // user property: two strings
			if len(rest) < 2 {
				return p, 0, malformed("truncated user property")
			}
			k := 2 + int(binary.BigEndian.Uint16(rest))
			if len(rest) < k+2 {
				return p, 0, malformed("truncated user property")
			}
			size = k + 2 + int(binary.BigEndian.Uint16(rest[k:]))
		default:
			return p, 0, malformed("unknown property 0x%02x", id)
		}
		if size > len(rest) {
			return p, 0, malformed("truncated property 0x%02x", id)
		}
		v := rest[:size]
		switch id {
		case 0x21:
			p.ReceiveMaximum = binary.BigEndian.Uint16(v)
			if p.ReceiveMaximum == 0 {
				return p, 0, malformed("receive maximum 0")
			}
		case 0x27:
			p.MaximumPacketSize = binary.BigEndian.Uint32(v)
		case 0x22:
			p.TopicAliasMaximum = binary.BigEndian.Uint16(v)
		case 0x11:
			p.SessionExpiry, p.HasSessionExpiry = binary.BigEndian.Uint32(v), true
		case 0x1F:
			p.ReasonString = string(v[2:])
		case 0x12:
			p.AssignedClientID = string(v[2:])
		}
		rest = rest[size:]
	}
	return p, w + n, nil
}

// Connack is a decoded CONNACK.
type Connack struct {
	SessionPresent bool
	Reason         byte // 0 accepted; >= 0x80 refused
	Props          Properties
}

// DecodeConnack decodes a CONNACK body (MQTT 5).
func DecodeConnack(body []byte) (Connack, error) {
	if len(body) < 2 {
		return Connack{}, malformed("CONNACK of %d bytes", len(body))
	}
	if body[0]&^1 != 0 {
		return Connack{}, malformed("CONNACK flags 0x%02x", body[0])
	}
	c := Connack{SessionPresent: body[0]&1 == 1, Reason: body[1]}
	if len(body) == 2 { // MQTT 3.1.1 form, or a refusal without properties
		return c, nil
	}
	p, n, err := decodeProperties(body[2:])
	if err != nil {
		return c, err
	}
	if 2+n != len(body) {
		return c, malformed("%d bytes after CONNACK properties", len(body)-2-n)
	}
	c.Props = p
	return c, nil
}

// Puback is a decoded PUBACK.
type Puback struct {
	PacketID uint16
	Reason   byte // 0 success, 0x10 no matching subscribers, >= 0x80 refused
	Props    Properties
}

// DecodePuback decodes a PUBACK body (MQTT 5; a 2-byte body means success).
func DecodePuback(body []byte) (Puback, error) {
	if len(body) < 2 {
		return Puback{}, malformed("PUBACK of %d bytes", len(body))
	}
	a := Puback{PacketID: binary.BigEndian.Uint16(body)}
	if a.PacketID == 0 {
		return a, malformed("PUBACK with packet id 0")
	}
	if len(body) == 2 {
		return a, nil
	}
	a.Reason = body[2]
	if len(body) == 3 {
		return a, nil
	}
	p, n, err := decodeProperties(body[3:])
	if err != nil {
		return a, err
	}
	if 3+n != len(body) {
		return a, malformed("%d bytes after PUBACK properties", len(body)-3-n)
	}
	a.Props = p
	return a, nil
}

// Disconnect is a decoded DISCONNECT.
type Disconnect struct {
	Reason byte
	Props  Properties
}

// DecodeDisconnect decodes a DISCONNECT body (empty means reason 0).
func DecodeDisconnect(body []byte) (Disconnect, error) {
	if len(body) == 0 {
		return Disconnect{}, nil
	}
	d := Disconnect{Reason: body[0]}
	if len(body) == 1 {
		return d, nil
	}
	p, n, err := decodeProperties(body[1:])
	if err != nil {
		return d, err
	}
	if 1+n != len(body) {
		return d, malformed("%d bytes after DISCONNECT properties", len(body)-1-n)
	}
	d.Props = p
	return d, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// Connect is what AppendConnect writes.
type Connect struct {
	ClientID       string
	Username       string
	Password       []byte
	HasPassword    bool
	CleanStart     bool
	KeepAlive      uint16 // seconds; 0 disables keep-alive
	SessionExpiry  uint32 // seconds; 0: the session ends with the connection
	ReceiveMaximum uint16 // what this client accepts from the server; 0: absent
}

// AppendConnect appends an MQTT 5 CONNECT packet. Strings longer than
// 65535 bytes are an error.
func AppendConnect(b []byte, c *Connect) ([]byte, error) {
	if len(c.ClientID) > 0xffff || len(c.Username) > 0xffff || len(c.Password) > 0xffff {
		return b, errors.New("leanmqtt: CONNECT field over 65535 bytes")
	}
	var props []byte
	if c.SessionExpiry > 0 {
		props = append(props, 0x11)
		props = binary.BigEndian.AppendUint32(props, c.SessionExpiry)
	}
	if c.ReceiveMaximum > 0 {
		props = append(props, 0x21)
		props = binary.BigEndian.AppendUint16(props, c.ReceiveMaximum)
	}
	props = append(props, 0x27)
	props = binary.BigEndian.AppendUint32(props, MaxPacket)
	flags := byte(0)
	if c.CleanStart {
		flags |= 0x02
	}
	if c.Username != "" {
		flags |= 0x80
	}
	if c.HasPassword || len(c.Password) > 0 {
		flags |= 0x40
	}
	n := 10 + len(appendVarint(nil, len(props))) + len(props) + 2 + len(c.ClientID)
	if flags&0x80 != 0 {
		n += 2 + len(c.Username)
	}
	if flags&0x40 != 0 {
		n += 2 + len(c.Password)
	}
	b = append(b, TypeConnect<<4)
	b = appendVarint(b, n)
	b = append(b, 0, 4, 'M', 'Q', 'T', 'T', 5, flags)
	b = binary.BigEndian.AppendUint16(b, c.KeepAlive)
	b = appendVarint(b, len(props))
	b = append(b, props...)
	b = appendString(b, c.ClientID)
	if flags&0x80 != 0 {
		b = appendString(b, c.Username)
	}
	if flags&0x40 != 0 {
		b = binary.BigEndian.AppendUint16(b, uint16(len(c.Password)))
		b = append(b, c.Password...)
	}
	return b, nil
}

// AppendPublish appends an MQTT 5 QoS 1 PUBLISH without properties.
func AppendPublish(b []byte, topic string, pid uint16, payload []byte, dup bool) []byte {
	h := TypePublish<<4 | 0x02
	if dup {
		h |= 0x08
	}
	b = append(b, h)
	b = appendVarint(b, 2+len(topic)+2+1+len(payload))
	b = appendString(b, topic)
	b = binary.BigEndian.AppendUint16(b, pid)
	b = append(b, 0) // no properties
	return append(b, payload...)
}

// AppendPuback appends a PUBACK (used by tests acting as a server).
func AppendPuback(b []byte, pid uint16, reason byte) []byte {
	if reason == 0 {
		return append(b, TypePuback<<4, 2, byte(pid>>8), byte(pid))
	}
	return append(b, TypePuback<<4, 3, byte(pid>>8), byte(pid), reason)
}
