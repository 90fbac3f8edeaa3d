// Package modbus is a small Modbus RTU codec and master transport: the
// CRC-16/MODBUS, frame encoding and decoding, exception replies as typed
// errors, and a Transport that runs one request/reply exchange over a Port
// with the inter-frame gap, a ctx deadline, resynchronisation and flushing.
//
// The codec (this file) turns bytes into values and back and knows nothing
// of time; the transport (transport.go) does the waiting. It imports only
// the standard library.
package modbus

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Function codes used by the PZEM-004T v3 (and common Modbus devices).
const (
	FuncReadHolding byte = 0x03
	FuncReadInput   byte = 0x04
	FuncWriteSingle byte = 0x06
	FuncCalibrate   byte = 0x41 // PZEM vendor function
	FuncResetEnergy byte = 0x42 // PZEM vendor function
	exceptionBit    byte = 0x80
	maxFrameLen          = 256
	minFrameLen          = 4 // address, function, CRC
)

// Addresses with a special meaning on a bus.
const (
	AddrBroadcast byte = 0x00 // every slave acts, none replies
	AddrMin       byte = 0x01
	AddrMax       byte = 0xF7
	AddrGeneral   byte = 0xF8 // PZEM: every meter answers; one meter per bus only
)

// Frame is one RTU frame without its CRC: the slave address, the function
// code and the data that follows.
type Frame struct {
	Addr byte
	Func byte
	Data []byte
}

// IsException reports whether f is an exception reply (function | 0x80).
func (f Frame) IsException() bool { return f.Func&exceptionBit != 0 }

// Err returns an *ExceptionError when f is an exception reply, else nil.
func (f Frame) Err() error {
	if !f.IsException() {
		return nil
	}
	e := &ExceptionError{Addr: f.Addr, Func: f.Func &^ exceptionBit}
	if len(f.Data) > 0 {
		e.Code = ExceptionCode(f.Data[0])
	}
	return e
}

func (f Frame) String() string { return fmt.Sprintf("% X", Append(nil, f)) }

// Append appends the wire form of f (with its CRC) to b.
func Append(b []byte, f Frame) []byte {
	start := len(b)
	b = append(b, f.Addr, f.Func)
	b = append(b, f.Data...)
	c := CRC16(b[start:])
	return append(b, byte(c), byte(c>>8))
}

// Encode returns the wire form of f, CRC included.
func Encode(f Frame) []byte { return Append(make([]byte, 0, len(f.Data)+4), f) }

// Errors of the codec and the transport. Check them with errors.Is.
var (
	// ErrShortFrame: fewer bytes than the frame needs.
	ErrShortFrame = errors.New("modbus: short frame")
	// ErrFrameTooLong: more than 256 bytes.
	ErrFrameTooLong = errors.New("modbus: frame longer than 256 bytes")
	// ErrCRC: the CRC does not match (see *CRCError for the values).
	ErrCRC = errors.New("modbus: CRC mismatch")
	// ErrTimeout: nothing (or not enough) arrived before the deadline.
	ErrTimeout = errors.New("modbus: no reply before deadline")
	// ErrUnexpectedReply: a well-formed frame that does not answer the request.
	ErrUnexpectedReply = errors.New("modbus: reply does not match request")
)

// CRCError is a frame whose CRC did not match. errors.Is(err, ErrCRC) holds.
type CRCError struct {
	Got, Want uint16
	Frame     []byte
}

func (e *CRCError) Error() string {
	return fmt.Sprintf("modbus: CRC mismatch (got %04X, want %04X) in frame % X", e.Got, e.Want, e.Frame)
}

// Is makes errors.Is(err, ErrCRC) true.
func (e *CRCError) Is(target error) bool { return target == ErrCRC }

// ExceptionCode is the one-byte reason of an exception reply.
type ExceptionCode byte

// Exception codes the PZEM-004T sends.
const (
	IllegalFunction    ExceptionCode = 0x01
	IllegalAddress     ExceptionCode = 0x02
	IllegalData        ExceptionCode = 0x03
	SlaveDeviceFailure ExceptionCode = 0x04
)

func (c ExceptionCode) String() string {
	switch c {
	case IllegalFunction:
		return "illegal function"
	case IllegalAddress:
		return "illegal data address"
	case IllegalData:
		return "illegal data value"
	case SlaveDeviceFailure:
		return "slave device failure"
	}
	return fmt.Sprintf("exception 0x%02X", byte(c))
}

// ExceptionError is an exception reply from a slave. Use errors.As.
type ExceptionError struct {
	Addr byte
	Func byte // the request's function code (without 0x80)
	Code ExceptionCode
}

func (e *ExceptionError) Error() string {
	return fmt.Sprintf("modbus: address %d refused function 0x%02X: %v", e.Addr, e.Func, e.Code)
}

// Exception builds the exception reply frame for a request.
func Exception(addr, fn byte, code ExceptionCode) Frame {
	return Frame{Addr: addr, Func: fn | exceptionBit, Data: []byte{byte(code)}}
}

// Decode parses one complete frame (CRC included) and checks its CRC. The
// returned Data aliases b.
func Decode(b []byte) (Frame, error) {
	if len(b) < minFrameLen {
		return Frame{}, fmt.Errorf("%w: %d bytes, need at least %d", ErrShortFrame, len(b), minFrameLen)
	}
	if len(b) > maxFrameLen {
		return Frame{}, ErrFrameTooLong
	}
	n := len(b) - 2
	want := CRC16(b[:n])
	got := uint16(b[n]) | uint16(b[n+1])<<8
	if got != want {
		return Frame{}, &CRCError{Got: got, Want: want, Frame: b}
	}
	return Frame{Addr: b[0], Func: b[1], Data: b[2:n]}, nil
}

// RequestLen returns the total length (CRC included) of the request frame
// that starts with head, once head holds enough bytes to know it (two), or
// 0 when it cannot tell (too few bytes, or a function it does not know).
func RequestLen(head []byte) int {
	if len(head) < 2 {
		return 0
	}
	switch head[1] {
	case FuncReadHolding, FuncReadInput, FuncWriteSingle:
		return 8
	case FuncCalibrate:
		return 6
	case FuncResetEnergy:
		return 4
	}
	return 0
}

// ReplyLen returns the total length (CRC included) of the reply frame that
// starts with head, or 0 when head is too short to tell or the function is
// unknown. Read replies need three bytes (the byte count).
func ReplyLen(head []byte) int {
	if len(head) < 2 {
		return 0
	}
	if head[1]&exceptionBit != 0 {
		return 5
	}
	switch head[1] {
	case FuncReadHolding, FuncReadInput:
		if len(head) < 3 {
			return 0
		}
		return 3 + int(head[2]) + 2
	case FuncWriteSingle:
		return 8
	case FuncCalibrate:
		return 6
	case FuncResetEnergy:
		return 4
	}
	return 0
}

// ReadRequest builds a read request (function 0x03 or 0x04) for count
// registers from start.
func ReadRequest(addr, fn byte, start, count uint16) Frame {
	d := make([]byte, 4)
	binary.BigEndian.PutUint16(d, start)
	binary.BigEndian.PutUint16(d[2:], count)
	return Frame{Addr: addr, Func: fn, Data: d}
}

// WriteSingleRequest builds a write-single-register request (0x06).
func WriteSingleRequest(addr byte, reg, value uint16) Frame {
	d := make([]byte, 4)
	binary.BigEndian.PutUint16(d, reg)
	binary.BigEndian.PutUint16(d[2:], value)
	return Frame{Addr: addr, Func: FuncWriteSingle, Data: d}
}

// ParseReadRequest returns the start and count of a 0x03/0x04 request.
func ParseReadRequest(f Frame) (start, count uint16, err error) {
	if len(f.Data) != 4 {
		return 0, 0, fmt.Errorf("%w: read request carries %d data bytes, want 4", ErrShortFrame, len(f.Data))
	}
	return binary.BigEndian.Uint16(f.Data), binary.BigEndian.Uint16(f.Data[2:]), nil
}

// ParseWriteSingle returns the register and value of a 0x06 request or its
// echo.
func ParseWriteSingle(f Frame) (reg, value uint16, err error) {
	if len(f.Data) != 4 {
		return 0, 0, fmt.Errorf("%w: write frame carries %d data bytes, want 4", ErrShortFrame, len(f.Data))
	}
	return binary.BigEndian.Uint16(f.Data), binary.BigEndian.Uint16(f.Data[2:]), nil
}

// ReadReply builds the reply to a read request carrying regs.
func ReadReply(addr, fn byte, regs []uint16) Frame {
	d := make([]byte, 1+2*len(regs))
	d[0] = byte(2 * len(regs))
	for i, r := range regs {
		binary.BigEndian.PutUint16(d[1+2*i:], r)
	}
	return Frame{Addr: addr, Func: fn, Data: d}
}

// ParseReadReply returns the registers of a read reply, checking that the
// byte count matches the data and that want registers came back.
func ParseReadReply(f Frame, want int) ([]uint16, error) {
	if err := f.Err(); err != nil {
		return nil, err
	}
	if len(f.Data) < 1 || int(f.Data[0]) != len(f.Data)-1 || f.Data[0]%2 != 0 {
		return nil, fmt.Errorf("%w: read reply byte count does not match its data (% X)", ErrUnexpectedReply, f.Data)
	}
	n := int(f.Data[0]) / 2
	if n != want {
		return nil, fmt.Errorf("%w: %d registers in reply, asked for %d", ErrUnexpectedReply, n, want)
	}
	regs := make([]uint16, n)
	for i := range regs {
		regs[i] = binary.BigEndian.Uint16(f.Data[1+2*i:])
	}
	return regs, nil
}
