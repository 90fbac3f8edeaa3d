// Package pzemcli is the `pzem` command shared by loadwatch and
// loadwatch-agent: read, scan, set-address, set-alarm, reset-energy and
// calibrate PZEM-004T v3 meters on a serial port. Commands are kong
// structs with Run(ctx) error.
package pzemcli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"loadwatch/internal/modbus"
	"loadwatch/internal/power"
	"loadwatch/internal/pzem"
	"loadwatch/internal/serialport"
)

// Cmd is the `pzem` command group.
type Cmd struct {
	Read        ReadCmd        `cmd:"" help:"Read voltage, current, power, energy, frequency, power factor and alarm of one or more meters."`
	Scan        ScanCmd        `cmd:"" help:"Find which addresses answer on the bus."`
	SetAddress  SetAddressCmd  `cmd:"" help:"Give a meter a new Modbus address (connect one meter at a time; --addr 248 reaches the only meter on the bus)."`
	SetAlarm    SetAlarmCmd    `cmd:"" help:"Read or write the power alarm threshold in watts."`
	ResetEnergy ResetEnergyCmd `cmd:"" help:"Reset a meter's energy counter to 0 Wh."`
	Calibrate   CalibrateCmd   `cmd:"" help:"Send the factory calibration command (address 0xF8: only one meter on the bus; needs a reference load)."`
}

// Link holds the flags every subcommand shares.
type Link struct {
	Port    string        `required:"" placeholder:"DEV" help:"Serial device of the meter bus, e.g. /dev/ttyUSB0, or the path that 'loadwatch sim pzem --pty' printed."`
	Timeout time.Duration `default:"500ms" help:"Time to wait for one reply (the meter needs about 110-130 ms)."`
	Retries int           `default:"2" help:"Further attempts after a CRC error, short frame or timeout."`
	JSON    bool          `name:"json" help:"Print JSON (one object per line) instead of text."`

	Out io.Writer `kong:"-"` // standard output when nil
}

func (l *Link) out() io.Writer {
	if l.Out == nil {
		return os.Stdout
	}
	return l.Out
}

// open opens the port and a driver on it.
func (l *Link) open() (*pzem.Dev, io.Closer, error) {
	p, err := serialport.Open(l.Port)
	if err != nil {
		return nil, nil, err
	}
	retries := l.Retries
	if retries == 0 {
		retries = pzem.NoRetries
	}
	d, err := pzem.New(p, &pzem.Opts{Timeout: l.Timeout, Retries: retries})
	if err != nil {
		p.Close()
		return nil, nil, err
	}
	return d, p, nil
}

func (l *Link) print(v any, text string) error {
	if l.JSON {
		return json.NewEncoder(l.out()).Encode(v)
	}
	_, err := fmt.Fprintln(l.out(), text)
	return err
}

// address checks a flag value: a meter address 1..247, or 248 (the
// general address) when general is allowed.
func address(a int, general bool) (uint8, error) {
	if general && a == int(modbus.AddrGeneral) {
		return modbus.AddrGeneral, nil
	}
	if err := pzem.CheckAddress(a); err != nil {
		return 0, err
	}
	return uint8(a), nil
}

// LinkJSON is the link counters of one address as printed.
type LinkJSON struct {
	Requests    uint64  `json:"requests"`
	Replies     uint64  `json:"replies"`
	CRCErrors   uint64  `json:"crc_errors"`
	ShortFrames uint64  `json:"short_frames"`
	Timeouts    uint64  `json:"timeouts"`
	Exceptions  uint64  `json:"exceptions"`
	Retries     uint64  `json:"retries"`
	Resyncs     uint64  `json:"resyncs"`
	LatencyMS   float64 `json:"latency_ms"`
}

func linkJSON(s pzem.Stats) LinkJSON {
	return LinkJSON{s.Requests, s.Replies, s.CRCErrors, s.ShortFrames, s.Timeouts, s.Exceptions, s.Retries, s.Resyncs,
		float64(s.LastLatency.Microseconds()) / 1000}
}

// ReadingJSON is one line of `pzem read --json`.
type ReadingJSON struct {
	Address   uint8     `json:"address"`
	Time      time.Time `json:"time"`
	Voltage   *float64  `json:"voltage,omitempty"`   // V
	Current   *float64  `json:"current,omitempty"`   // A
	Power     *float64  `json:"power,omitempty"`     // W
	Energy    *float64  `json:"energy,omitempty"`    // Wh (the meter's counter)
	Frequency *float64  `json:"frequency,omitempty"` // Hz
	PF        *float64  `json:"pf,omitempty"`        // 0..1
	Alarm     *bool     `json:"alarm,omitempty"`
	Error     string    `json:"error,omitempty"`
	Link      LinkJSON  `json:"link"`
}

func f64(x float64) *float64 { return &x }

// ReadCmd is `pzem read`.
type ReadCmd struct {
	Link     `embed:""`
	Addr     []int         `default:"1" sep:"," help:"Meter address(es) 1..247, comma-separated (e.g. 1,2,3)."`
	Count    int           `default:"1" help:"Read cycles to run (0: until stopped)."`
	Interval time.Duration `default:"1s" help:"Time between the starts of two cycles (the meter refreshes about once a second)."`
}

// Run reads every address once per cycle and prints one line per meter.
// It fails when any read failed.
func (c *ReadCmd) Run(ctx context.Context) error {
	addrs := make([]uint8, 0, len(c.Addr))
	for _, a := range c.Addr {
		u, err := address(a, false)
		if err != nil {
			return err
		}
		addrs = append(addrs, u)
	}
	if c.Count < 0 || c.Interval < 0 {
		return errors.New("pzem read: --count and --interval must not be negative")
	}
	d, closer, err := c.open()
	if err != nil {
		return err
	}
	defer closer.Close()
	var failed, total int
	for cycle := 0; c.Count == 0 || cycle < c.Count; cycle++ {
		start := time.Now()
		for _, res := range d.ReadAll(ctx, addrs) {
			total++
			if res.Err != nil {
				failed++
			}
			if err := c.print(readingJSON(res, d.Stats(res.Addr)), readingText(res, d.Stats(res.Addr))); err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			break
		}
		if c.Count != 0 && cycle+1 >= c.Count {
			break
		}
		select {
		case <-time.After(time.Until(start.Add(c.Interval))):
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	if failed > 0 {
		return fmt.Errorf("pzem read: %d of %d reads failed", failed, total)
	}
	return nil
}

func readingJSON(res pzem.Result, s pzem.Stats) ReadingJSON {
	j := ReadingJSON{Address: res.Addr, Time: res.Reading.Time, Link: linkJSON(s)}
	if res.Err != nil {
		j.Error = res.Err.Error()
		j.Time = time.Now()
		return j
	}
	r := res.Reading
	if r.Is(power.FieldVoltage) {
		j.Voltage = f64(float64(r.Voltage))
	}
	if r.Is(power.FieldCurrent) {
		j.Current = f64(float64(r.Current))
	}
	if r.Is(power.FieldPower) {
		j.Power = f64(float64(r.Power))
	}
	if r.Is(power.FieldEnergy) {
		j.Energy = f64(float64(r.Energy))
	}
	if r.Is(power.FieldFrequency) {
		j.Frequency = f64(float64(r.Frequency))
	}
	if r.Is(power.FieldPF) {
		j.PF = f64(float64(r.PF))
	}
	if r.Is(power.FieldAlarm) {
		a := r.Alarm
		j.Alarm = &a
	}
	return j
}

func readingText(res pzem.Result, s pzem.Stats) string {
	if res.Err != nil {
		return fmt.Sprintf("address %d: %v", res.Addr, res.Err)
	}
	r := res.Reading
	alarm := "off"
	if r.Alarm {
		alarm = "ON"
	}
	return fmt.Sprintf("address %d: %v  %v  %v  %v  %v  pf %v  alarm %s  (%d ms, %d requests, %d errors)",
		res.Addr, r.Voltage, r.Current, r.Power, r.Energy, r.Frequency, r.PF, alarm,
		s.LastLatency.Milliseconds(), s.Requests, s.CRCErrors+s.ShortFrames+s.Timeouts+s.Exceptions)
}

// ScanCmd is `pzem scan`.
type ScanCmd struct {
	Link        `embed:""`
	From        int           `default:"1" help:"First address to probe."`
	To          int           `default:"247" help:"Last address to probe."`
	ScanTimeout time.Duration `default:"250ms" help:"Wait per address (a full scan of 247 addresses takes about a minute)."`
}

// Run probes the range and prints the addresses that answered.
func (c *ScanCmd) Run(ctx context.Context) error {
	from, err := address(c.From, false)
	if err != nil {
		return err
	}
	to, err := address(c.To, false)
	if err != nil {
		return err
	}
	p, err := serialport.Open(c.Port)
	if err != nil {
		return err
	}
	defer p.Close()
	d, err := pzem.New(p, &pzem.Opts{ScanTimeout: c.ScanTimeout})
	if err != nil {
		return err
	}
	found, err := d.Scan(ctx, from, to)
	if err != nil {
		return err
	}
	list := make([]string, len(found))
	ints := make([]int, len(found))
	for i, a := range found {
		list[i] = fmt.Sprint(a)
		ints[i] = int(a)
	}
	text := fmt.Sprintf("%d meter(s) answered in %d..%d: %s", len(found), from, to, strings.Join(list, " "))
	if len(found) == 0 {
		text = fmt.Sprintf("no meter answered in %d..%d (are the meters powered from AC? is TX/RX crossed?)", from, to)
	}
	return c.print(map[string]any{"from": from, "to": to, "found": ints}, text)
}

// SetAddressCmd is `pzem set-address`.
type SetAddressCmd struct {
	Link `embed:""`
	Addr int `default:"1" help:"Current address of the meter (248 reaches the only meter on the bus)."`
	New  int `arg:"" help:"New address, 1..247."`
}

// Run writes the new address and reads it back at the new address.
func (c *SetAddressCmd) Run(ctx context.Context) error {
	from, err := address(c.Addr, true)
	if err != nil {
		return err
	}
	to, err := address(c.New, false)
	if err != nil {
		return err
	}
	d, closer, err := c.open()
	if err != nil {
		return err
	}
	defer closer.Close()
	if err := d.SetAddress(ctx, from, to); err != nil {
		return err
	}
	got, err := d.Address(ctx, to)
	if err != nil {
		return fmt.Errorf("pzem set-address: written, but the meter does not answer at %d: %w", to, err)
	}
	if got != to {
		return fmt.Errorf("pzem set-address: meter reports address %d after writing %d", got, to)
	}
	return c.print(map[string]any{"address": to, "previous": from}, fmt.Sprintf("address %d is now %d", from, to))
}

// SetAlarmCmd is `pzem set-alarm`.
type SetAlarmCmd struct {
	Link  `embed:""`
	Addr  int      `default:"1" help:"Meter address 1..247."`
	Watts *float64 `arg:"" optional:"" help:"New threshold in watts (0..65535); leave out to print the current one."`
}

// Run writes (when given) and then reads the alarm threshold.
func (c *SetAlarmCmd) Run(ctx context.Context) error {
	a, err := address(c.Addr, true)
	if err != nil {
		return err
	}
	if c.Watts != nil && (*c.Watts < 0 || *c.Watts > 65535) {
		return fmt.Errorf("pzem set-alarm: threshold %v W out of range 0..65535", *c.Watts)
	}
	d, closer, err := c.open()
	if err != nil {
		return err
	}
	defer closer.Close()
	if c.Watts != nil {
		if err := d.SetAlarmThreshold(ctx, a, power.Watts(*c.Watts)); err != nil {
			return err
		}
	}
	w, err := d.AlarmThreshold(ctx, a)
	if err != nil {
		return err
	}
	return c.print(map[string]any{"address": a, "alarm_threshold": float64(w)}, fmt.Sprintf("address %d: alarm threshold %v", a, w))
}

// ResetEnergyCmd is `pzem reset-energy`.
type ResetEnergyCmd struct {
	Link `embed:""`
	Addr int `default:"1" help:"Meter address 1..247."`
}

// Run resets the counter.
func (c *ResetEnergyCmd) Run(ctx context.Context) error {
	a, err := address(c.Addr, true)
	if err != nil {
		return err
	}
	d, closer, err := c.open()
	if err != nil {
		return err
	}
	defer closer.Close()
	if err := d.ResetEnergy(ctx, a); err != nil {
		return err
	}
	return c.print(map[string]any{"address": a, "energy": 0}, fmt.Sprintf("address %d: energy counter reset", a))
}

// CalibrateCmd is `pzem calibrate`.
type CalibrateCmd struct {
	Link `embed:""`
	Yes  bool `help:"Confirm: calibration changes the meter's accuracy; run it only with a known reference load and one meter on the bus."`
}

// Run sends the calibration command to 0xF8.
func (c *CalibrateCmd) Run(ctx context.Context) error {
	if !c.Yes {
		return errors.New("pzem calibrate: this rewrites the meter's calibration; connect one meter with a reference load and pass --yes")
	}
	d, closer, err := c.open()
	if err != nil {
		return err
	}
	defer closer.Close()
	if err := d.Calibrate(ctx); err != nil {
		return err
	}
	return c.print(map[string]any{"calibrated": true}, "calibration command accepted")
}
