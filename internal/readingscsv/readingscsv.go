// Package readingscsv reads and writes the "readings CSV", the one file
// format loadwatch uses for labelled and unlabelled power readings (see
// datasets/README.md):
//
//	timestamp,device,voltage,current,power,energy,frequency,pf,label
//
// An empty field means "not measured": the matching power.Reading.Has bit is
// left clear. Columns are found by name, so their order may differ and extra
// columns are ignored; timestamp, device and power are required, label is
// optional. The reader streams (one row at a time) and reports bad rows with
// their line number.
package readingscsv

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"loadwatch/internal/power"
)

// Columns is the canonical header, in the order the Writer writes it.
var Columns = []string{"timestamp", "device", "voltage", "current", "power", "energy", "frequency", "pf", "label"}

// TimeLayout is how timestamps are written: RFC 3339 UTC with milliseconds.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// Errors a bad file or row is checked against with errors.Is.
var (
	ErrHeader        = errors.New("bad header")
	ErrBadNumber     = errors.New("not a number")
	ErrNotFinite     = errors.New("not a finite number")
	ErrNegative      = errors.New("negative value")
	ErrPFRange       = errors.New("power factor outside 0..1")
	ErrBadTimestamp  = errors.New("bad timestamp")
	ErrTimeOrder     = errors.New("timestamp not after the previous one of this device")
	ErrMissingField  = errors.New("required field is empty")
	ErrFieldCount    = errors.New("wrong number of fields")
	ErrDuplicateName = errors.New("duplicate column")
)

// ParseError is a bad row (or header): the 1-based line, the column (empty
// when the whole line is wrong) and the cause.
type ParseError struct {
	Line   int
	Column string
	Err    error
}

func (e *ParseError) Error() string {
	if e.Column == "" {
		return fmt.Sprintf("line %d: %v", e.Line, e.Err)
	}
	return fmt.Sprintf("line %d, column %q: %v", e.Line, e.Column, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// Row is one reading of one device with its optional label.
type Row struct {
	Device  string
	Reading power.Reading
	Label   string // "" when the file has no label column or the field is empty
	Line    int    // 1-based line number in the file
}

// column indexes into a record; -1 = absent.
type columns struct {
	ts, device, voltage, current, power, energy, freq, pf, label int
}

// Reader reads rows one at a time. It is not safe for concurrent use.
type Reader struct {
	cr      *csv.Reader
	col     columns
	header  []string
	record  []string
	last    map[string]time.Time
	devices map[string]string // interned device names and labels
	line    int
}

// NewReader reads and checks the header of r.
func NewReader(r io.Reader) (*Reader, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	cr.FieldsPerRecord = 0 // the header fixes the count
	h, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &ParseError{Line: 1, Err: fmt.Errorf("%w: empty file", ErrHeader)}
		}
		return nil, &ParseError{Line: 1, Err: fmt.Errorf("%w: %w", ErrHeader, err)}
	}
	header := append([]string(nil), h...)
	if len(header) > 0 {
		header[0] = trimBOM(header[0])
	}
	col := columns{-1, -1, -1, -1, -1, -1, -1, -1, -1}
	seen := map[string]bool{}
	for i, name := range header {
		if seen[name] {
			return nil, &ParseError{Line: 1, Column: name, Err: fmt.Errorf("%w: %w", ErrHeader, ErrDuplicateName)}
		}
		seen[name] = true
		switch name {
		case "timestamp":
			col.ts = i
		case "device":
			col.device = i
		case "voltage":
			col.voltage = i
		case "current":
			col.current = i
		case "power":
			col.power = i
		case "energy":
			col.energy = i
		case "frequency":
			col.freq = i
		case "pf":
			col.pf = i
		case "label":
			col.label = i
		}
	}
	for _, req := range []struct {
		name string
		idx  int
	}{{"timestamp", col.ts}, {"device", col.device}, {"power", col.power}} {
		if req.idx < 0 {
			return nil, &ParseError{Line: 1, Err: fmt.Errorf("%w: no %q column", ErrHeader, req.name)}
		}
	}
	return &Reader{
		cr:      cr,
		col:     col,
		header:  header,
		last:    map[string]time.Time{},
		devices: map[string]string{},
		line:    1,
	}, nil
}

func trimBOM(s string) string {
	if len(s) >= 3 && s[0] == 0xEF && s[1] == 0xBB && s[2] == 0xBF {
		return s[3:]
	}
	return s
}

// Header returns the file's column names as read.
func (r *Reader) Header() []string { return r.header }

// HasLabel reports whether the file has a label column.
func (r *Reader) HasLabel() bool { return r.col.label >= 0 }

// Record returns the raw fields of the row last returned by Read. The slice
// is reused by the next Read.
func (r *Reader) Record() []string { return r.record }

// Read returns the next row, or io.EOF after the last one. A bad row gives a
// *ParseError; reading may continue after it (the bad row is skipped).
func (r *Reader) Read() (Row, error) {
	rec, err := r.cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return Row{}, io.EOF
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			r.line = pe.Line
			if errors.Is(err, csv.ErrFieldCount) {
				return Row{}, &ParseError{Line: pe.Line, Err: fmt.Errorf("%w: want %d", ErrFieldCount, len(r.header))}
			}
			return Row{}, &ParseError{Line: pe.Line, Err: pe.Err}
		}
		return Row{}, err
	}
	line, _ := r.cr.FieldPos(0)
	r.line = line
	r.record = rec
	return r.parse(rec, line)
}

func (r *Reader) parse(rec []string, line int) (Row, error) {
	c := &r.col
	row := Row{Line: line}
	dev := rec[c.device]
	if dev == "" {
		return Row{}, &ParseError{Line: line, Column: "device", Err: ErrMissingField}
	}
	row.Device = r.intern(dev)
	ts := rec[c.ts]
	if ts == "" {
		return Row{}, &ParseError{Line: line, Column: "timestamp", Err: ErrMissingField}
	}
	t, err := parseTime(ts)
	if err != nil {
		return Row{}, &ParseError{Line: line, Column: "timestamp", Err: fmt.Errorf("%w: %q", ErrBadTimestamp, ts)}
	}
	rd := &row.Reading
	rd.Time = t
	if rec[c.power] == "" {
		return Row{}, &ParseError{Line: line, Column: "power", Err: ErrMissingField}
	}
	fields := [...]struct {
		idx  int
		name string
		bit  power.Field
	}{
		{c.voltage, "voltage", power.FieldVoltage},
		{c.current, "current", power.FieldCurrent},
		{c.power, "power", power.FieldPower},
		{c.energy, "energy", power.FieldEnergy},
		{c.freq, "frequency", power.FieldFrequency},
		{c.pf, "pf", power.FieldPF},
	}
	for _, f := range fields {
		if f.idx < 0 || rec[f.idx] == "" {
			continue
		}
		v, err := parseNumber(rec[f.idx])
		if err != nil {
			return Row{}, &ParseError{Line: line, Column: f.name, Err: err}
		}
		if v < 0 {
			return Row{}, &ParseError{Line: line, Column: f.name, Err: fmt.Errorf("%w: %v", ErrNegative, v)}
		}
		switch f.bit {
		case power.FieldVoltage:
			rd.Voltage = power.Volts(v)
		case power.FieldCurrent:
			rd.Current = power.Amperes(v)
		case power.FieldPower:
			rd.Power = power.Watts(v)
		case power.FieldEnergy:
			rd.Energy = power.WattHours(v)
		case power.FieldFrequency:
			rd.Frequency = power.Hertz(v)
		case power.FieldPF:
			if v > 1 {
				return Row{}, &ParseError{Line: line, Column: f.name, Err: fmt.Errorf("%w: %v", ErrPFRange, v)}
			}
			rd.PF = power.PowerFactor(v)
		}
		rd.Has |= f.bit
	}
	if c.label >= 0 && rec[c.label] != "" {
		row.Label = r.intern(rec[c.label])
	}
	if prev, ok := r.last[row.Device]; ok && !t.After(prev) {
		return Row{}, &ParseError{Line: line, Column: "timestamp", Err: fmt.Errorf("%w: %s after %s", ErrTimeOrder, t.Format(TimeLayout), prev.Format(TimeLayout))}
	}
	r.last[row.Device] = t
	return row, nil
}

// intern returns a copy of s shared by every row with the same text, so
// that rows do not keep whole input lines alive.
func (r *Reader) intern(s string) string {
	if d, ok := r.devices[s]; ok {
		return d
	}
	d := string([]byte(s))
	r.devices[d] = d
	return d
}

func parseNumber(s string) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q", ErrBadNumber, s)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%w: %q", ErrNotFinite, s)
	}
	return v, nil
}

// parseTime accepts RFC 3339 with or without fractional seconds. The result
// is in UTC.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}

// ReadAll reads every row of r. It stops at the first bad row.
func ReadAll(r io.Reader) ([]Row, error) {
	rd, err := NewReader(r)
	if err != nil {
		return nil, err
	}
	var rows []Row
	for {
		row, err := rd.Read()
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
}

// Writer writes rows in the canonical column order. The header is written
// before the first row (or by Flush when there are no rows). Call Flush at
// the end and check its error.
type Writer struct {
	cw      *csv.Writer
	started bool
	rec     [9]string
}

// NewWriter returns a Writer to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{cw: csv.NewWriter(w)}
}

func (w *Writer) header() error {
	if w.started {
		return nil
	}
	w.started = true
	return w.cw.Write(Columns)
}

// Write writes one reading of device with its label ("" for none). Fields
// whose Has bit is clear are written empty. Numbers are written with the
// shortest representation that reads back to the same float64.
func (w *Writer) Write(device string, r power.Reading, label string) error {
	if err := w.header(); err != nil {
		return err
	}
	if device == "" {
		return fmt.Errorf("readingscsv: write: %w: device", ErrMissingField)
	}
	if !r.Is(power.FieldPower) {
		return fmt.Errorf("readingscsv: write: %w: power", ErrMissingField)
	}
	if err := checkWritable(r); err != nil {
		return fmt.Errorf("readingscsv: write %s at %s: %w", device, r.Time.UTC().Format(TimeLayout), err)
	}
	w.rec[0] = formatTime(r.Time)
	w.rec[1] = device
	w.rec[2] = w.num(r, power.FieldVoltage, float64(r.Voltage))
	w.rec[3] = w.num(r, power.FieldCurrent, float64(r.Current))
	w.rec[4] = w.num(r, power.FieldPower, float64(r.Power))
	w.rec[5] = w.num(r, power.FieldEnergy, float64(r.Energy))
	w.rec[6] = w.num(r, power.FieldFrequency, float64(r.Frequency))
	w.rec[7] = w.num(r, power.FieldPF, float64(r.PF))
	w.rec[8] = label
	return w.cw.Write(w.rec[:])
}

// formatTime writes milliseconds, or nanoseconds when the time has more
// precision, so that nothing is lost.
func formatTime(t time.Time) string {
	t = t.UTC()
	if t.Nanosecond()%int(time.Millisecond) == 0 {
		return t.Format(TimeLayout)
	}
	return t.Format("2006-01-02T15:04:05.000000000Z07:00")
}

// checkWritable refuses values the Reader would refuse, so that what the
// Writer writes always reads back.
func checkWritable(r power.Reading) error {
	vals := [...]struct {
		f    power.Field
		name string
		v    float64
	}{
		{power.FieldVoltage, "voltage", float64(r.Voltage)},
		{power.FieldCurrent, "current", float64(r.Current)},
		{power.FieldPower, "power", float64(r.Power)},
		{power.FieldEnergy, "energy", float64(r.Energy)},
		{power.FieldFrequency, "frequency", float64(r.Frequency)},
		{power.FieldPF, "pf", float64(r.PF)},
	}
	for _, x := range vals {
		if !r.Is(x.f) {
			continue
		}
		switch {
		case math.IsNaN(x.v) || math.IsInf(x.v, 0):
			return fmt.Errorf("%s: %w", x.name, ErrNotFinite)
		case x.v < 0:
			return fmt.Errorf("%s: %w", x.name, ErrNegative)
		case x.f == power.FieldPF && x.v > 1:
			return fmt.Errorf("%s: %w", x.name, ErrPFRange)
		}
	}
	return nil
}

func (w *Writer) num(r power.Reading, f power.Field, v float64) string {
	if !r.Is(f) {
		return ""
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// Flush writes the header if nothing was written yet, flushes buffered
// data and returns any write error.
func (w *Writer) Flush() error {
	if err := w.header(); err != nil {
		return err
	}
	w.cw.Flush()
	return w.cw.Error()
}
