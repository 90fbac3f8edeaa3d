package classify

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"time"

	"loadwatch/internal/features"
	"loadwatch/internal/power"
)

// MaxWindow is the most readings one /api/v1/predict request may carry.
const MaxWindow = 3600

// maxBody bounds a request body.
const maxBody = 1 << 20

// ReadingJSON is one reading in a predict request. A field left out was
// not measured. ts (RFC 3339) is required when a request holds more than
// one reading; a single reading without ts is taken as "now".
type ReadingJSON struct {
	TS        string   `json:"ts,omitempty"`
	Voltage   *float64 `json:"voltage,omitempty"`
	Current   *float64 `json:"current,omitempty"`
	Power     *float64 `json:"power"`
	Energy    *float64 `json:"energy,omitempty"`
	Frequency *float64 `json:"frequency,omitempty"`
	PF        *float64 `json:"pf,omitempty"`
}

// PredictRequest is the body of POST /api/v1/predict: either a window of
// readings of one device, oldest first, or one reading given at the top
// level.
type PredictRequest struct {
	Device   string        `json:"device,omitempty"`
	Readings []ReadingJSON `json:"readings,omitempty"`
	ReadingJSON
}

// ModelInfo says which model answered.
type ModelInfo struct {
	Kind       string    `json:"kind"`
	FeatureSet string    `json:"feature_set"`
	Legacy     bool      `json:"legacy"`
	TrainedAt  time.Time `json:"trained_at"`
	DataHash   string    `json:"data_hash"`
	SHA256     string    `json:"sha256,omitempty"`
}

// PredictResponse is the answer of POST /api/v1/predict: the class of the
// last reading of the window, its probability and every class's.
type PredictResponse struct {
	Class         string             `json:"class"`
	Confidence    float64            `json:"confidence"`
	Probabilities map[string]float64 `json:"probabilities"`
	Readings      int                `json:"readings"`
	Model         ModelInfo          `json:"model"`
}

// LegacyRequest is the body of the Flask-compatible POST /predict.
type LegacyRequest struct {
	Power  *float64 `json:"power"`
	Energy *float64 `json:"energy"`
}

// LegacyResponse is the answer of POST /predict.
type LegacyResponse struct {
	Prediction string  `json:"prediction"`
	Confidence float64 `json:"confidence"`
}

// ErrNotLegacy is the refusal of /predict when the model in use is not a
// legacy [power, energy] model.
var ErrNotLegacy = errors.New("the model in use does not take the legacy [power, energy] features")

type httpError struct {
	code int
	msg  string
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeErr(w http.ResponseWriter, e *httpError) {
	writeJSON(w, e.code, map[string]string{"error": e.msg})
}

func badRequest(format string, a ...any) *httpError {
	return &httpError{http.StatusBadRequest, fmt.Sprintf(format, a...)}
}

// extractors pools feature extractors per feature set, so a request does
// not allocate its windows anew.
var extractors sync.Map // set name -> *sync.Pool

func getExtractor(set string) (*features.Extractor, *sync.Pool, error) {
	p, ok := extractors.Load(set)
	if !ok {
		if _, err := features.Names(set); err != nil {
			return nil, nil, err
		}
		p, _ = extractors.LoadOrStore(set, &sync.Pool{New: func() any {
			e, _ := features.New(set, features.Config{})
			return e
		}})
	}
	pool := p.(*sync.Pool)
	e := pool.Get().(*features.Extractor)
	e.Reset()
	return e, pool, nil
}

// PredictHandler serves POST /api/v1/predict.
func (h *Holder) PredictHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeErr(w, &httpError{http.StatusMethodNotAllowed, "use POST"})
			return
		}
		l := h.Current()
		if l == nil {
			writeErr(w, &httpError{http.StatusServiceUnavailable, ErrNoModel.Error()})
			return
		}
		var req PredictRequest
		if e := decodeJSON(w, r, &req); e != nil {
			writeErr(w, e)
			return
		}
		window := req.Readings
		if len(window) == 0 {
			if req.Power == nil {
				writeErr(w, badRequest("no readings: give \"readings\": [...] or one reading with \"power\""))
				return
			}
			window = []ReadingJSON{req.ReadingJSON}
		} else if req.Power != nil {
			writeErr(w, badRequest("give either \"readings\" or one top-level reading, not both"))
			return
		}
		if len(window) > MaxWindow {
			writeErr(w, &httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf("%d readings; at most %d per request", len(window), MaxWindow)})
			return
		}
		m := l.Model
		e, pool, err := getExtractor(m.FeatureSet)
		if err != nil {
			writeErr(w, &httpError{http.StatusInternalServerError, err.Error()})
			return
		}
		defer pool.Put(e)
		x := make([]float32, e.NumFeatures())
		var prev time.Time
		for i, rj := range window {
			rd, err := rj.reading(len(window) == 1, h.now)
			if err != nil {
				writeErr(w, badRequest("reading %d: %v", i, err))
				return
			}
			if i > 0 && !rd.Time.After(prev) {
				writeErr(w, badRequest("reading %d: ts %s is not after the previous reading", i, rj.TS))
				return
			}
			prev = rd.Time
			e.Push(rd, x)
		}
		probs := make([]float32, len(m.Classes))
		m.Forest.PredictProba(x, probs)
		best := 0
		for i, p := range probs {
			if p > probs[best] {
				best = i
			}
		}
		resp := PredictResponse{
			Class:         m.Classes[best],
			Confidence:    round6(probs[best]),
			Probabilities: make(map[string]float64, len(probs)),
			Readings:      len(window),
			Model:         info(l),
		}
		for i, p := range probs {
			resp.Probabilities[m.Classes[i]] = round6(p)
		}
		writeJSON(w, http.StatusOK, resp)
	})
}

// round6 keeps float32 noise out of the JSON.
func round6(p float32) float64 { return math.Round(float64(p)*1e6) / 1e6 }

func info(l *Loaded) ModelInfo {
	m := l.Model
	return ModelInfo{Kind: m.Kind, FeatureSet: m.FeatureSet, Legacy: m.Legacy, TrainedAt: m.TrainedAt, DataHash: m.DataHash, SHA256: l.SHA256}
}

func decodeJSON(w http.ResponseWriter, r *http.Request, v any) *httpError {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return &httpError{http.StatusUnsupportedMediaType, fmt.Sprintf("content type %q; want application/json", ct)}
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &httpError{http.StatusRequestEntityTooLarge, "request body too large"}
		}
		return badRequest("bad JSON: %v", err)
	}
	if dec.More() {
		return badRequest("bad JSON: more than one value")
	}
	return nil
}

// reading converts and checks one JSON reading.
func (rj ReadingJSON) reading(single bool, now func() time.Time) (power.Reading, error) {
	var r power.Reading
	switch {
	case rj.TS != "":
		t, err := time.Parse(time.RFC3339Nano, rj.TS)
		if err != nil {
			return r, fmt.Errorf("bad ts %q: want RFC 3339", rj.TS)
		}
		r.Time = t
	case single:
		r.Time = now()
	default:
		return r, errors.New("ts is required when a request holds several readings")
	}
	if rj.Power == nil {
		return r, errors.New("power is required")
	}
	fields := [...]struct {
		v    *float64
		name string
		bit  power.Field
	}{
		{rj.Voltage, "voltage", power.FieldVoltage},
		{rj.Current, "current", power.FieldCurrent},
		{rj.Power, "power", power.FieldPower},
		{rj.Energy, "energy", power.FieldEnergy},
		{rj.Frequency, "frequency", power.FieldFrequency},
		{rj.PF, "pf", power.FieldPF},
	}
	for _, f := range fields {
		if f.v == nil {
			continue
		}
		v := *f.v
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return r, fmt.Errorf("%s = %v: want a finite value >= 0", f.name, v)
		}
		if f.bit == power.FieldPF && v > 1 {
			return r, fmt.Errorf("pf = %v: want 0..1", v)
		}
		switch f.bit {
		case power.FieldVoltage:
			r.Voltage = power.Volts(v)
		case power.FieldCurrent:
			r.Current = power.Amperes(v)
		case power.FieldPower:
			r.Power = power.Watts(v)
		case power.FieldEnergy:
			r.Energy = power.WattHours(v)
		case power.FieldFrequency:
			r.Frequency = power.Hertz(v)
		case power.FieldPF:
			r.PF = power.PowerFactor(v)
		}
		r.Has |= f.bit
	}
	return r, nil
}

// LegacyHandler serves POST /predict, the form of the original Flask
// service: {"power": W, "energy": Wh} (JSON, or the same two fields
// form-encoded) in, {"prediction": class, "confidence": p} out. It needs a
// legacy model (feature set "legacy": raw power and energy) and answers 409
// Conflict with an explanation otherwise, because loadwatch's own models
// need a device's readings over time, not one (P, E) pair.
func (h *Holder) LegacyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeErr(w, &httpError{http.StatusMethodNotAllowed, "use POST"})
			return
		}
		l := h.Current()
		if l == nil {
			writeErr(w, &httpError{http.StatusServiceUnavailable, ErrNoModel.Error()})
			return
		}
		m := l.Model
		if !m.Legacy || m.FeatureSet != features.SetLegacy {
			writeErr(w, &httpError{http.StatusConflict, fmt.Sprintf("%v (it uses feature set %q); load a model trained with --features legacy or imported from scikit-learn, or use POST /api/v1/predict", ErrNotLegacy, m.FeatureSet)})
			return
		}
		var req LegacyRequest
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/x-www-form-urlencoded" {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
			if err := r.ParseForm(); err != nil {
				writeErr(w, badRequest("bad form: %v", err))
				return
			}
			for _, f := range []struct {
				name string
				dst  **float64
			}{{"power", &req.Power}, {"energy", &req.Energy}} {
				if s := r.PostForm.Get(f.name); s != "" {
					v, err := strconv.ParseFloat(s, 64)
					if err != nil {
						writeErr(w, badRequest("%s = %q: not a number", f.name, s))
						return
					}
					*f.dst = &v
				}
			}
		} else if e := decodeJSON(w, r, &req); e != nil {
			writeErr(w, e)
			return
		}
		if req.Power == nil || req.Energy == nil {
			writeErr(w, badRequest("want both \"power\" (W) and \"energy\" (Wh)"))
			return
		}
		for _, v := range []float64{*req.Power, *req.Energy} {
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				writeErr(w, badRequest("power and energy must be finite and >= 0"))
				return
			}
		}
		x := [2]float32{float32(*req.Power), float32(*req.Energy)}
		c, p := m.Forest.Predict(x[:])
		writeJSON(w, http.StatusOK, LegacyResponse{Prediction: m.Classes[c], Confidence: round6(p)})
	})
}
