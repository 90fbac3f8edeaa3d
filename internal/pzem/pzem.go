// Package pzem drives PZEM-004T v3 energy meters over a Modbus RTU bus:
// measurements, alarm threshold, slave address, energy reset, calibration,
// bus scan, and per-address link counters for metrics.
//
// A Dev owns one bus (one serial port) and serialises every exchange on it;
// several meters with distinct addresses can share the bus.
package pzem

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"loadwatch/internal/modbus"
	"loadwatch/internal/power"
)

// Opts configures a Dev. A zero field means the default given beside it.
type Opts struct {
	// Timeout bounds one attempt (request to complete reply). Default
	// 500 ms: the meter answers in about 110-130 ms.
	Timeout time.Duration
	// Retries is how many more attempts follow a failed one (CRC error,
	// short frame, timeout, slave device failure). Default 2; set
	// NoRetries for none.
	Retries int
	// ScanTimeout bounds the single attempt Scan makes per address.
	// Default 250 ms.
	ScanTimeout time.Duration
	// Gap is the silence kept between frames. Default modbus.DefaultGap
	// (3.5 characters at 9600 baud).
	Gap time.Duration
}

// NoRetries as Opts.Retries means one attempt only.
const NoRetries = -1

// DefaultOpts are the values used for zero fields of Opts.
var DefaultOpts = Opts{
	Timeout:     500 * time.Millisecond,
	Retries:     2,
	ScanTimeout: 250 * time.Millisecond,
	Gap:         modbus.DefaultGap,
}

// Stats are the link counters of one address. Every attempt counts once
// in Requests and once in exactly one of Replies, CRCErrors, ShortFrames,
// Timeouts, Exceptions or Other.
type Stats struct {
	Requests    uint64        // attempts sent
	Replies     uint64        // good replies (not exceptions)
	CRCErrors   uint64        // replies with a bad CRC
	ShortFrames uint64        // some bytes, but no complete reply
	Timeouts    uint64        // nothing at all came back
	Exceptions  uint64        // exception replies
	Other       uint64        // port errors, cancellation
	Retries     uint64        // attempts after the first
	Resyncs     uint64        // good replies that needed stray bytes skipped
	LastLatency time.Duration // of the last good reply
}

// Dev is a PZEM-004T v3 bus. It is safe for concurrent use; exchanges are
// serialised.
type Dev struct {
	mu    sync.Mutex
	tr    *modbus.Transport
	opts  Opts
	stats map[uint8]*Stats
}

// New returns a Dev on port p. o may be nil for DefaultOpts.
func New(p modbus.Port, o *Opts) (*Dev, error) {
	if p == nil {
		return nil, errors.New("pzem: nil port")
	}
	opts := DefaultOpts
	if o != nil {
		if o.Timeout < 0 || o.ScanTimeout < 0 || o.Gap < 0 {
			return nil, errors.New("pzem: negative duration in Opts")
		}
		if o.Timeout > 0 {
			opts.Timeout = o.Timeout
		}
		switch {
		case o.Retries > 0:
			opts.Retries = o.Retries
		case o.Retries < 0:
			opts.Retries = 0
		}
		if o.ScanTimeout > 0 {
			opts.ScanTimeout = o.ScanTimeout
		}
		if o.Gap > 0 {
			opts.Gap = o.Gap
		}
	}
	return &Dev{
		tr:    modbus.NewTransport(p, opts.Gap, 0),
		opts:  opts,
		stats: map[uint8]*Stats{},
	}, nil
}

// AddressError is an address outside 1..247 where a meter address is needed.
type AddressError struct{ Addr int }

func (e *AddressError) Error() string {
	return fmt.Sprintf("pzem: address %d out of range %d..%d", e.Addr, modbus.AddrMin, modbus.AddrMax)
}

// CheckAddress returns an *AddressError unless 1 <= a <= 247.
func CheckAddress(a int) error {
	if a < int(modbus.AddrMin) || a > int(modbus.AddrMax) {
		return &AddressError{Addr: a}
	}
	return nil
}

// NoReplyError means a meter sent nothing back on any attempt.
// errors.Is(err, modbus.ErrTimeout) holds.
type NoReplyError struct {
	Addr     uint8
	Attempts int
}

func (e *NoReplyError) Error() string {
	return fmt.Sprintf("pzem: no reply from address %d (is the meter powered from AC?); %d attempts", e.Addr, e.Attempts)
}

func (e *NoReplyError) Unwrap() error { return modbus.ErrTimeout }

// LinkError is any other failed exchange with a meter; it keeps its cause
// (a *modbus.CRCError, modbus.ErrShortFrame, a *modbus.ExceptionError, ...).
type LinkError struct {
	Addr     uint8
	Func     byte
	Attempts int
	Err      error
}

func (e *LinkError) Error() string {
	return fmt.Sprintf("pzem: address %d, function 0x%02X, %d attempts: %v", e.Addr, e.Func, e.Attempts, e.Err)
}

func (e *LinkError) Unwrap() error { return e.Err }

// Read reads the ten measurement registers of the meter at addr.
func (d *Dev) Read(ctx context.Context, addr uint8) (power.Reading, error) {
	if err := CheckAddress(int(addr)); err != nil {
		return power.Reading{}, err
	}
	regs, err := d.readRegs(ctx, addr, modbus.FuncReadInput, RegVoltage, NumInput)
	if err != nil {
		return power.Reading{}, err
	}
	m, err := ParseMeasurements(regs)
	if err != nil {
		return power.Reading{}, err
	}
	return m.Reading(time.Now()), nil
}

// Result is one meter's outcome in ReadAll.
type Result struct {
	Addr    uint8
	Reading power.Reading
	Err     error
}

// ReadAll reads every address in turn in one cycle and returns one Result
// each, in the order given. A meter that fails does not stop the others;
// a cancelled ctx does.
func (d *Dev) ReadAll(ctx context.Context, addrs []uint8) []Result {
	out := make([]Result, 0, len(addrs))
	for _, a := range addrs {
		if err := ctx.Err(); err != nil {
			out = append(out, Result{Addr: a, Err: err})
			continue
		}
		r, err := d.Read(ctx, a)
		out = append(out, Result{Addr: a, Reading: r, Err: err})
	}
	return out
}

// AlarmThreshold reads the power alarm threshold.
func (d *Dev) AlarmThreshold(ctx context.Context, addr uint8) (power.Watts, error) {
	if err := checkTarget(addr); err != nil {
		return 0, err
	}
	regs, err := d.readRegs(ctx, addr, modbus.FuncReadHolding, RegAlarmThreshold, 1)
	if err != nil {
		return 0, err
	}
	return power.Watts(regs[0]), nil
}

// SetAlarmThreshold writes the power alarm threshold (whole watts,
// 0..65535).
func (d *Dev) SetAlarmThreshold(ctx context.Context, addr uint8, w power.Watts) error {
	if err := checkTarget(addr); err != nil {
		return err
	}
	if w < 0 || w > 65535 {
		return fmt.Errorf("pzem: alarm threshold %v out of range 0..65535 W", w)
	}
	return d.writeReg(ctx, addr, RegAlarmThreshold, uint16(w+0.5))
}

// Address reads the slave address register of the meter reached at addr
// (use modbus.AddrGeneral on a bus with one meter to learn its address).
func (d *Dev) Address(ctx context.Context, addr uint8) (uint8, error) {
	if err := checkTarget(addr); err != nil {
		return 0, err
	}
	regs, err := d.readRegs(ctx, addr, modbus.FuncReadHolding, RegSlaveAddress, 1)
	if err != nil {
		return 0, err
	}
	return uint8(regs[0]), nil
}

// SetAddress gives the meter reached at addr the new address. To number
// several meters, connect one at a time and use modbus.AddrGeneral.
func (d *Dev) SetAddress(ctx context.Context, addr, newAddr uint8) error {
	if err := checkTarget(addr); err != nil {
		return err
	}
	if err := CheckAddress(int(newAddr)); err != nil {
		return err
	}
	return d.writeReg(ctx, addr, RegSlaveAddress, uint16(newAddr))
}

// ResetEnergy sets the meter's energy counter to zero.
func (d *Dev) ResetEnergy(ctx context.Context, addr uint8) error {
	if err := checkTarget(addr); err != nil {
		return err
	}
	req := modbus.Frame{Addr: addr, Func: modbus.FuncResetEnergy}
	_, err := d.do(ctx, req, d.opts.Retries, d.opts.Timeout, echo(req))
	return err
}

// Calibrate sends the factory calibration command. The meter accepts it
// only at the general address 0xF8, so only one meter may be on the bus.
func (d *Dev) Calibrate(ctx context.Context) error {
	req := modbus.Frame{Addr: modbus.AddrGeneral, Func: modbus.FuncCalibrate, Data: CalibrationKey}
	_, err := d.do(ctx, req, 0, d.opts.Timeout, echo(req))
	return err
}

// Scan probes addresses from..to (inclusive, within 1..247) with one short
// attempt each and returns those that answered (an exception reply counts:
// something is there).
func (d *Dev) Scan(ctx context.Context, from, to uint8) ([]uint8, error) {
	if err := CheckAddress(int(from)); err != nil {
		return nil, err
	}
	if err := CheckAddress(int(to)); err != nil {
		return nil, err
	}
	if from > to {
		return nil, fmt.Errorf("pzem: scan range %d..%d is empty", from, to)
	}
	var found []uint8
	for a := int(from); a <= int(to); a++ {
		req := modbus.ReadRequest(uint8(a), modbus.FuncReadHolding, RegSlaveAddress, 1)
		_, err := d.do(ctx, req, 0, d.opts.ScanTimeout, nil)
		var ex *modbus.ExceptionError
		switch {
		case err == nil, errors.As(err, &ex):
			found = append(found, uint8(a))
		case ctx.Err() != nil:
			return found, ctx.Err()
		}
	}
	return found, nil
}

// Stats returns the counters of one address.
func (d *Dev) Stats(addr uint8) Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.stats[addr]; s != nil {
		return *s
	}
	return Stats{}
}

// AllStats returns the counters of every address used so far.
func (d *Dev) AllStats() map[uint8]Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[uint8]Stats, len(d.stats))
	for a, s := range d.stats {
		out[a] = *s
	}
	return out
}

// Addresses returns the addresses used so far, sorted.
func (d *Dev) Addresses() []uint8 {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]uint8, 0, len(d.stats))
	for a := range d.stats {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func checkTarget(addr uint8) error {
	if addr == modbus.AddrGeneral {
		return nil
	}
	return CheckAddress(int(addr))
}

func (d *Dev) readRegs(ctx context.Context, addr, fn byte, start, count uint16) ([]uint16, error) {
	req := modbus.ReadRequest(addr, fn, start, count)
	var regs []uint16
	_, err := d.do(ctx, req, d.opts.Retries, d.opts.Timeout, func(f modbus.Frame) error {
		var err error
		regs, err = modbus.ParseReadReply(f, int(count))
		return err
	})
	return regs, err
}

func (d *Dev) writeReg(ctx context.Context, addr uint8, reg, value uint16) error {
	req := modbus.WriteSingleRequest(addr, reg, value)
	_, err := d.do(ctx, req, d.opts.Retries, d.opts.Timeout, echo(req))
	return err
}

// echo checks that a reply repeats the request's data.
func echo(req modbus.Frame) func(modbus.Frame) error {
	return func(f modbus.Frame) error {
		if string(f.Data) != string(req.Data) {
			return fmt.Errorf("%w: echo % X, sent % X", modbus.ErrUnexpectedReply, f.Data, req.Data)
		}
		return nil
	}
}

// retryable reports whether another attempt may succeed.
func retryable(err error) bool {
	var ex *modbus.ExceptionError
	if errors.As(err, &ex) {
		return ex.Code == modbus.SlaveDeviceFailure
	}
	return errors.Is(err, modbus.ErrCRC) || errors.Is(err, modbus.ErrShortFrame) ||
		errors.Is(err, modbus.ErrTimeout) || errors.Is(err, modbus.ErrUnexpectedReply)
}

// do runs req with up to 1+retries attempts, counting each. check, when
// set, validates a non-exception reply.
func (d *Dev) do(ctx context.Context, req modbus.Frame, retries int, timeout time.Duration, check func(modbus.Frame) error) (modbus.Frame, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.stats[req.Addr]
	if st == nil {
		st = &Stats{}
		d.stats[req.Addr] = st
	}
	var err error
	attempts := 0
	for attempts <= retries {
		if ctx.Err() != nil {
			break
		}
		if attempts > 0 {
			st.Retries++
		}
		attempts++
		st.Requests++
		actx, cancel := context.WithTimeout(ctx, timeout)
		var f modbus.Frame
		var info modbus.Info
		f, info, err = d.tr.Exchange(actx, req)
		cancel()
		if err == nil {
			err = f.Err()
		}
		if err == nil && check != nil {
			err = check(f)
		}
		var ex *modbus.ExceptionError
		switch {
		case err == nil:
			st.Replies++
			st.LastLatency = info.Latency
			if info.Skipped > 0 {
				st.Resyncs++
			}
			return f, nil
		case errors.As(err, &ex):
			st.Exceptions++
		case errors.Is(err, modbus.ErrCRC):
			st.CRCErrors++
		case errors.Is(err, modbus.ErrTimeout):
			st.Timeouts++
		case errors.Is(err, modbus.ErrShortFrame), errors.Is(err, modbus.ErrUnexpectedReply):
			st.ShortFrames++
		default:
			st.Other++
		}
		if ctx.Err() != nil {
			return modbus.Frame{}, fmt.Errorf("pzem: address %d: %w", req.Addr, ctx.Err())
		}
		if !retryable(err) {
			break
		}
	}
	if attempts == 0 {
		return modbus.Frame{}, fmt.Errorf("pzem: address %d: %w", req.Addr, ctx.Err())
	}
	if errors.Is(err, modbus.ErrTimeout) {
		return modbus.Frame{}, &NoReplyError{Addr: req.Addr, Attempts: attempts}
	}
	return modbus.Frame{}, &LinkError{Addr: req.Addr, Func: req.Func, Attempts: attempts, Err: err}
}
