package telemetry

import (
	"bytes"
	"math"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"loadwatch/internal/power"
)

// A hand-written decoder for the telemetry payload, the server's hot path:
// no reflection, and no allocation beyond the epoch string, the readings
// slice and a features map. It accepts exactly RFC 8259 JSON; keys match
// case-sensitively (encoding/json would also take "Power" for "power");
// unknown keys are skipped; a duplicate key's last value wins.

type scanner struct {
	b   []byte
	i   int
	err *Error // first syntax error
}

const maxDepth = 64

func (s *scanner) fail(r Reason, msg string) bool {
	if s.err == nil {
		s.err = &Error{Reason: r, Index: -1, Err: errString(msg + " at offset " + strconv.Itoa(s.i))}
	}
	return false
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// str reads a string at s.i (which must be '"') and returns its raw
// contents and whether it has escapes.
func (s *scanner) str() (raw []byte, esc bool, ok bool) {
	if s.peek() != '"' {
		return nil, false, s.fail(ReasonMalformedJSON, "expected string")
	}
	s.i++
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			raw = s.b[start:s.i]
			s.i++
			return raw, esc, true
		case c == '\\':
			esc = true
			if s.i+1 >= len(s.b) {
				return nil, false, s.fail(ReasonMalformedJSON, "truncated escape")
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.b) {
					return nil, false, s.fail(ReasonMalformedJSON, "truncated \\u escape")
				}
				for _, h := range s.b[s.i+2 : s.i+6] {
					if !isHex(h) {
						return nil, false, s.fail(ReasonMalformedJSON, "bad \\u escape")
					}
				}
				s.i += 6
			default:
				return nil, false, s.fail(ReasonMalformedJSON, "bad escape")
			}
		case c < 0x20:
			return nil, false, s.fail(ReasonMalformedJSON, "control character in string")
		default:
			s.i++
		}
	}
	return nil, false, s.fail(ReasonMalformedJSON, "unterminated string")
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func hexVal(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		default:
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}

// unescape decodes the contents of a string already validated by str.
// Invalid UTF-8 and lone surrogates become U+FFFD, as encoding/json does.
func unescape(raw []byte, esc bool) string {
	if !esc && utf8.Valid(raw) {
		return string(raw)
	}
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			if c < utf8.RuneSelf {
				out = append(out, c)
				i++
				continue
			}
			r, n := utf8.DecodeRune(raw[i:])
			out = utf8.AppendRune(out, r) // RuneError for invalid bytes
			i += n
			continue
		}
		switch raw[i+1] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := hexVal(raw[i+2 : i+6])
			i += 6
			if utf16.IsSurrogate(r) {
				if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					if r2 := utf16.DecodeRune(r, hexVal(raw[i+2:i+6])); r2 != utf8.RuneError {
						out = utf8.AppendRune(out, r2)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
			continue
		default: // " \ /
			out = append(out, raw[i+1])
		}
		i += 2
	}
	return string(out)
}

// number reads a JSON number and returns its text.
func (s *scanner) number() ([]byte, bool) {
	start := s.i
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case c >= '1' && c <= '9':
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
		}
	default:
		return nil, s.fail(ReasonMalformedJSON, "bad number")
	}
	if s.peek() == '.' {
		s.i++
		d := s.i
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
		}
		if s.i == d {
			return nil, s.fail(ReasonMalformedJSON, "bad fraction")
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		d := s.i
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
		}
		if s.i == d {
			return nil, s.fail(ReasonMalformedJSON, "bad exponent")
		}
	}
	return s.b[start:s.i], true
}

// literal reads true, false or null.
func (s *scanner) literal(word string) bool {
	if len(s.b)-s.i >= len(word) && string(s.b[s.i:s.i+len(word)]) == word {
		s.i += len(word)
		return true
	}
	return s.fail(ReasonMalformedJSON, "bad literal")
}

// kind of the value at s.i: '"', '{', '[', 't', 'f', 'n', '0' (number), or
// 0 for something that is not JSON. NaN and Infinity are reported as such.
func (s *scanner) kind() byte {
	switch c := s.peek(); {
	case c == '"' || c == '{' || c == '[' || c == 't' || c == 'f' || c == 'n':
		return c
	case c == '-' || c >= '0' && c <= '9':
		if c == '-' && s.i+1 < len(s.b) && s.b[s.i+1] == 'I' {
			s.fail(ReasonNaNOrInf, "Infinity is not JSON")
			return 0
		}
		return '0'
	case c == 'N' || c == 'I':
		s.fail(ReasonNaNOrInf, "NaN or Infinity is not JSON")
		return 0
	}
	s.fail(ReasonMalformedJSON, "expected a value")
	return 0
}

// skip reads any value.
func (s *scanner) skip(depth int) bool {
	if depth > maxDepth {
		return s.fail(ReasonMalformedJSON, "nested too deeply")
	}
	switch s.kind() {
	case '"':
		_, _, ok := s.str()
		return ok
	case '0':
		_, ok := s.number()
		return ok
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	case '{':
		return s.object(func(key []byte, esc bool) bool { return s.skip(depth + 1) })
	case '[':
		s.i++
		s.ws()
		if s.peek() == ']' {
			s.i++
			return true
		}
		for {
			s.ws()
			if !s.skip(depth + 1) {
				return false
			}
			s.ws()
			switch s.peek() {
			case ',':
				s.i++
			case ']':
				s.i++
				return true
			default:
				return s.fail(ReasonMalformedJSON, "expected , or ]")
			}
		}
	}
	return false
}

// object reads an object, calling member with each key (raw) with s.i at
// the value (whitespace skipped); member must consume the value.
func (s *scanner) object(member func(key []byte, esc bool) bool) bool {
	if s.peek() != '{' {
		return s.fail(ReasonMalformedJSON, "expected object")
	}
	s.i++
	s.ws()
	if s.peek() == '}' {
		s.i++
		return true
	}
	for {
		s.ws()
		key, esc, ok := s.str()
		if !ok {
			return false
		}
		s.ws()
		if s.peek() != ':' {
			return s.fail(ReasonMalformedJSON, "expected :")
		}
		s.i++
		s.ws()
		if !member(key, esc) {
			return false
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return s.fail(ReasonMalformedJSON, "expected , or }")
		}
	}
}

// keyIs compares a raw key with a name (unescaping only when needed).
func keyIs(key []byte, esc bool, name string) bool {
	if !esc {
		return string(key) == name
	}
	return unescape(key, true) == name
}

// fields read into the same presence-recording types the reflection-based
// decoders use (optFloat and friends), so that the error rules are shared.

func (s *scanner) float(o *optFloat) bool {
	o.set, o.bad = true, ""
	switch s.kind() {
	case '0':
		raw, ok := s.number()
		if !ok {
			return false
		}
		return o.UnmarshalJSON(raw) == nil
	case 0:
		return false
	}
	o.bad = ReasonBadType
	return s.skip(1)
}

func (s *scanner) int(o *optInt) bool {
	o.set, o.bad = true, ""
	switch s.kind() {
	case '0':
		raw, ok := s.number()
		if !ok {
			return false
		}
		return o.UnmarshalJSON(raw) == nil
	case 0:
		return false
	}
	o.bad = ReasonBadType
	return s.skip(1)
}

func (s *scanner) bool(o *optBool) bool {
	o.set, o.bad = true, ""
	switch s.kind() {
	case 't':
		o.v = true
		return s.literal("true")
	case 'f':
		o.v = false
		return s.literal("false")
	case 0:
		return false
	}
	o.bad = ReasonBadType
	return s.skip(1)
}

// rawString keeps the raw bytes of a string field; most need no copy.
type rawString struct {
	raw []byte
	esc bool
	set bool
	bad Reason
}

func (s *scanner) string(o *rawString) bool {
	o.set, o.bad = true, ""
	switch s.kind() {
	case '"':
		var ok bool
		o.raw, o.esc, ok = s.str()
		return ok
	case 0:
		return false
	}
	o.bad = ReasonBadType
	return s.skip(1)
}

func (s *scanner) features(o *optFeatures) bool {
	o.set, o.bad = true, ""
	switch s.kind() {
	case '{':
	case 0:
		return false
	default:
		o.bad = ReasonBadType
		return s.skip(1)
	}
	o.v = make(map[string]float64, 8)
	return s.object(func(key []byte, esc bool) bool {
		var f optFloat
		if !s.float(&f) {
			return false
		}
		if f.bad != "" && o.bad == "" {
			o.bad = f.bad
		}
		o.v[unescape(key, esc)] = f.v
		return true
	})
}

type fastReading struct {
	v           optInt
	epoch       rawString
	seq         optInt
	ts          rawString
	clockSynced optBool
	voltage     optFloat
	current     optFloat
	power       optFloat
	energy      optFloat
	energyTotal optFloat
	frequency   optFloat
	pf          optFloat
	alarm       optBool
	state       rawString
	features    optFeatures
}

// member reads one member of a reading object.
func (s *scanner) member(w *fastReading, key []byte, esc bool) bool {
	if esc {
		key = []byte(unescape(key, true))
	}
	switch string(key) {
	case "v":
		return s.int(&w.v)
	case "epoch":
		return s.string(&w.epoch)
	case "seq":
		return s.int(&w.seq)
	case "ts":
		return s.string(&w.ts)
	case "clock_synced":
		return s.bool(&w.clockSynced)
	case "voltage":
		return s.float(&w.voltage)
	case "current":
		return s.float(&w.current)
	case "power":
		return s.float(&w.power)
	case "energy":
		return s.float(&w.energy)
	case "energy_total":
		return s.float(&w.energyTotal)
	case "frequency":
		return s.float(&w.frequency)
	case "pf":
		return s.float(&w.pf)
	case "alarm":
		return s.bool(&w.alarm)
	case "state":
		return s.string(&w.state)
	case "features":
		return s.features(&w.features)
	}
	return s.skip(1)
}

func (s *scanner) syntaxErr() error {
	if s.err != nil {
		return s.err
	}
	return &Error{Reason: ReasonMalformedJSON, Index: -1}
}

func decodeTelemetryInto(m *Message, payload []byte, now time.Time, lim Limits) error {
	if len(payload) > lim.MaxPayload {
		return &Error{Reason: ReasonTooLarge, Index: -1, Err: errString("payload of " + strconv.Itoa(len(payload)) + " bytes")}
	}
	s := scanner{b: payload}
	var top fastReading
	var items []fastReading
	batch := false
	s.ws()
	ok := s.object(func(key []byte, esc bool) bool {
		if !keyIs(key, esc, "readings") {
			return s.member(&top, key, esc)
		}
		if s.kind() != '[' {
			if s.err != nil {
				return false
			}
			s.fail(ReasonMalformedJSON, "readings is not an array")
			return false
		}
		batch = true
		// One allocation for the usual batch: count the "seq" keys.
		items = make([]fastReading, 0, min(bytes.Count(s.b[s.i:], []byte(`"seq"`)), lim.MaxBatch))
		s.i++
		s.ws()
		if s.peek() == ']' {
			s.i++
			return true
		}
		for {
			s.ws()
			if len(items) >= lim.MaxBatch {
				s.fail(ReasonTooLarge, "batch over its limit")
				s.err.Field = "readings"
				return false
			}
			items = append(items, fastReading{})
			it := &items[len(items)-1]
			if !s.object(func(key []byte, esc bool) bool { return s.member(it, key, esc) }) {
				return false
			}
			s.ws()
			switch s.peek() {
			case ',':
				s.i++
			case ']':
				s.i++
				return true
			default:
				return s.fail(ReasonMalformedJSON, "expected , or ]")
			}
		}
	})
	if ok {
		s.ws()
		if s.i != len(s.b) {
			ok = s.fail(ReasonMalformedJSON, "data after the object")
		}
	}
	if !ok {
		return s.syntaxErr()
	}
	if !top.v.set {
		return fieldErr(ReasonMissingField, "v", -1)
	}
	if top.v.bad != "" || top.v.v != Version {
		return fieldErr(ReasonUnsupportedVersion, "v", -1)
	}
	if top.epoch.bad != "" {
		return fieldErr(top.epoch.bad, "epoch", -1)
	}
	m.V = Version
	m.Epoch = unescape(top.epoch.raw, top.epoch.esc)
	if err := validateEpoch(m.Epoch); err != nil {
		return err
	}
	if !batch {
		m.Batch = false
		m.Readings = make([]Telemetry, 1)
		if err := fromFast(&m.Readings[0], &top, -1); err != nil {
			return err
		}
		return validateReading(&m.Readings[0], -1, now, &lim)
	}
	if top.seq.set || top.ts.set {
		return &Error{Reason: ReasonMalformedJSON, Index: -1, Err: errString("a batch carries seq and ts inside readings only")}
	}
	if len(items) == 0 {
		return fieldErr(ReasonMissingField, "readings", -1)
	}
	m.Batch = true
	m.Readings = make([]Telemetry, len(items))
	for i := range items {
		if items[i].v.set || items[i].epoch.set {
			return &Error{Reason: ReasonMalformedJSON, Field: "readings", Index: i, Err: errString("v and epoch belong to the message, not a reading")}
		}
		if err := fromFast(&m.Readings[i], &items[i], i); err != nil {
			return err
		}
		if err := validateReading(&m.Readings[i], i, now, &lim); err != nil {
			return err
		}
	}
	return nil
}

// parseTime parses an RFC 3339 timestamp; the common UTC "Z" forms with 0,
// 3, 6 or 9 fraction digits take a fast path.
func parseTime(raw []byte) (time.Time, error) {
	if t, ok := fastTime(raw); ok {
		return t, nil
	}
	return time.Parse(time.RFC3339Nano, string(raw))
}

func digits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func fastTime(b []byte) (time.Time, bool) {
	// 2006-01-02T15:04:05[.fff...]Z
	if len(b) < 20 || b[len(b)-1] != 'Z' || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return time.Time{}, false
	}
	y, ok1 := digits(b[0:4])
	mo, ok2 := digits(b[5:7])
	d, ok3 := digits(b[8:10])
	h, ok4 := digits(b[11:13])
	mi, ok5 := digits(b[14:16])
	sec, ok6 := digits(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 59 {
		return time.Time{}, false
	}
	ns := 0
	frac := b[19 : len(b)-1]
	if len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return time.Time{}, false
		}
		n, ok := digits(frac[1:])
		if !ok {
			return time.Time{}, false
		}
		for k := len(frac) - 1; k < 9; k++ {
			n *= 10
		}
		ns = n
	}
	t := time.Date(y, time.Month(mo), d, h, mi, sec, ns, time.UTC)
	if t.Day() != d { // 31 February and the like
		return time.Time{}, false
	}
	return t, true
}

func fromFast(t *Telemetry, w *fastReading, idx int) error {
	if !w.seq.set {
		return fieldErr(ReasonMissingField, "seq", idx)
	}
	if w.seq.bad != "" {
		return fieldErr(w.seq.bad, "seq", idx)
	}
	if w.seq.v < 0 {
		return fieldErr(ReasonOutOfRange, "seq", idx)
	}
	t.Seq = uint64(w.seq.v)
	if !w.ts.set {
		return fieldErr(ReasonMissingField, "ts", idx)
	}
	if w.ts.bad != "" {
		return fieldErr(w.ts.bad, "ts", idx)
	}
	raw := w.ts.raw
	if w.ts.esc {
		raw = []byte(unescape(raw, true))
	}
	ts, err := parseTime(raw)
	if err != nil {
		return &Error{Reason: ReasonBadTimestamp, Field: "ts", Index: idx, Err: err}
	}
	r := &t.Reading
	r.Time = ts
	if w.clockSynced.bad != "" {
		return fieldErr(w.clockSynced.bad, "clock_synced", idx)
	}
	t.ClockSynced = w.clockSynced.v
	var v float64
	if v, err = floatField(&w.voltage, "voltage", idx, power.FieldVoltage, &r.Has); err != nil {
		return err
	}
	r.Voltage = power.Volts(v)
	if v, err = floatField(&w.current, "current", idx, power.FieldCurrent, &r.Has); err != nil {
		return err
	}
	r.Current = power.Amperes(v)
	if v, err = floatField(&w.power, "power", idx, power.FieldPower, &r.Has); err != nil {
		return err
	}
	r.Power = power.Watts(v)
	if v, err = floatField(&w.energy, "energy", idx, power.FieldEnergy, &r.Has); err != nil {
		return err
	}
	r.Energy = power.WattHours(v)
	if v, err = floatField(&w.frequency, "frequency", idx, power.FieldFrequency, &r.Has); err != nil {
		return err
	}
	r.Frequency = power.Hertz(v)
	if v, err = floatField(&w.pf, "pf", idx, power.FieldPF, &r.Has); err != nil {
		return err
	}
	r.PF = power.PowerFactor(v)
	if w.alarm.set {
		if w.alarm.bad != "" {
			return fieldErr(w.alarm.bad, "alarm", idx)
		}
		r.Alarm = w.alarm.v
		r.Has |= power.FieldAlarm
	}
	var hasTotal power.Field
	if v, err = floatField(&w.energyTotal, "energy_total", idx, 1, &hasTotal); err != nil {
		return err
	}
	t.EnergyTotal, t.HasEnergyTotal = power.WattHours(v), hasTotal != 0
	if w.state.bad != "" {
		return fieldErr(w.state.bad, "state", idx)
	}
	switch string(w.state.raw) {
	case "active":
		t.State = StateActive
	case "heartbeat":
		t.State = StateHeartbeat
	case "event":
		t.State = StateEvent
	default:
		t.State = State(unescape(w.state.raw, w.state.esc))
	}
	if w.features.set {
		if w.features.bad != "" {
			return fieldErr(w.features.bad, "features", idx)
		}
		vals := w.features.v
		fv, ok := vals["v"]
		if !ok {
			return fieldErr(ReasonMissingField, "features.v", idx)
		}
		if fv != math.Trunc(fv) || fv < 1 || fv > math.MaxInt32 {
			return fieldErr(ReasonOutOfRange, "features.v", idx)
		}
		delete(vals, "v")
		t.Features = &Features{V: int(fv), Values: vals}
	}
	return nil
}
