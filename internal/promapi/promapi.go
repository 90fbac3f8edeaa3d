// Package promapi serves a subset of the Prometheus HTTP API over the
// store, so that Grafana (or any Prometheus client) can use loadwatch as a
// Prometheus data source. Responses have exactly Prometheus' JSON shape and
// status codes.
//
// Served: /api/v1/query, /api/v1/query_range (GET and POST form),
// /api/v1/labels, /api/v1/label/<name>/values, /api/v1/series,
// /api/v1/metadata and /api/v1/status/buildinfo.
package promapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"

	"loadwatch/internal/store"
)

// Querier is what the API needs from the store (*store.Store implements it).
type Querier interface {
	Query(ctx context.Context, q string, t time.Time) (*store.Result, error)
	QueryRange(ctx context.Context, q string, start, end time.Time, step time.Duration) (*store.Result, error)
	Series(ctx context.Context, selectors []string, start, end time.Time) ([][]store.Label, error)
	LabelNames(ctx context.Context, selectors []string, start, end time.Time) ([]string, error)
	LabelValues(ctx context.Context, name string, selectors []string, start, end time.Time) ([]string, error)
}

// BuildInfo is what /api/v1/status/buildinfo reports. Grafana reads
// Version to choose which API features to use.
type BuildInfo struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"`
	Branch    string `json:"branch"`
	BuildUser string `json:"buildUser"`
	BuildDate string `json:"buildDate"`
	GoVersion string `json:"goVersion"`
}

// CompatVersion is the Prometheus version whose PromQL engine is embedded
// (module v0.316.0 is Prometheus 3.16.0); it is the default BuildInfo.Version.
const CompatVersion = "3.16.0"

// Options configures the handler. Zero fields mean the documented defaults.
type Options struct {
	// Now is the clock for queries without a time. Default time.Now.
	Now func() time.Time
	// BuildInfo is reported by /api/v1/status/buildinfo. Default: Version
	// CompatVersion, GoVersion runtime.Version(), other fields "unknown".
	BuildInfo BuildInfo
	// Logger receives failures to write responses. Default: discard.
	Logger *slog.Logger
}

// API is the HTTP handler.
type API struct {
	q    Querier
	o    Options
	mux  *http.ServeMux
	info BuildInfo
}

// New returns the API over q. Mount it at the server root: it serves paths
// under /api/v1/.
func New(q Querier, o Options) *API {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	info := o.BuildInfo
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&info.Version, CompatVersion)
	def(&info.GoVersion, runtime.Version())
	def(&info.Revision, "unknown")
	def(&info.Branch, "unknown")
	def(&info.BuildUser, "unknown")
	def(&info.BuildDate, "unknown")
	a := &API{q: q, o: o, mux: http.NewServeMux(), info: info}
	both := func(path string, h func(*http.Request) result) {
		a.mux.HandleFunc("GET "+path, a.wrap(h))
		a.mux.HandleFunc("POST "+path, a.wrap(h))
	}
	both("/api/v1/query", a.query)
	both("/api/v1/query_range", a.queryRange)
	both("/api/v1/labels", a.labelNames)
	both("/api/v1/series", a.series)
	a.mux.HandleFunc("GET /api/v1/label/{name}/values", a.wrap(a.labelValues))
	a.mux.HandleFunc("GET /api/v1/metadata", a.wrap(a.metadata))
	a.mux.HandleFunc("GET /api/v1/status/buildinfo", a.wrap(func(*http.Request) result { return result{data: a.info} }))
	return a
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

type result struct {
	data     any
	err      *apiError
	warnings []string
	infos    []string
}

type apiError struct {
	typ string
	err error
}

// Prometheus' error types.
const (
	errBadData   = "bad_data"
	errExec      = "execution"
	errTimeout   = "timeout"
	errCanceled  = "canceled"
	errInternal  = "internal"
	statusClosed = 499 // client closed request, as Prometheus answers
)

func statusOf(typ string) int {
	switch typ {
	case errBadData:
		return http.StatusBadRequest
	case errExec:
		return http.StatusUnprocessableEntity
	case errCanceled:
		return statusClosed
	case errTimeout:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

type response struct {
	Status    string   `json:"status"`
	Data      any      `json:"data,omitempty"`
	ErrorType string   `json:"errorType,omitempty"`
	Error     string   `json:"error,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
	Infos     []string `json:"infos,omitempty"`
}

func (a *API) wrap(h func(*http.Request) result) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var res result
		if err := r.ParseForm(); err != nil {
			res.err = &apiError{errBadData, fmt.Errorf("error parsing form values: %w", err)}
		} else {
			res = h(r)
		}
		resp := response{Status: "success", Data: res.data, Warnings: res.warnings, Infos: res.infos}
		code := http.StatusOK
		if res.err != nil {
			resp = response{Status: "error", ErrorType: res.err.typ, Error: res.err.err.Error(), Warnings: res.warnings, Infos: res.infos}
			code = statusOf(res.err.typ)
		}
		b, err := json.Marshal(resp)
		if err != nil {
			a.o.Logger.Error("promapi: encode response", "err", err)
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		if _, err := w.Write(b); err != nil {
			a.o.Logger.Debug("promapi: write response", "err", err)
		}
	}
}

func invalidParam(name string, err error) result {
	return result{err: &apiError{errBadData, fmt.Errorf("invalid parameter %q: %w", name, err)}}
}

// fromStoreErr maps a store error to Prometheus' error type.
func fromStoreErr(err error, param string) *apiError {
	var qe *store.QueryError
	if errors.As(err, &qe) {
		if qe.Kind == store.KindBadData && param != "" {
			return &apiError{errBadData, fmt.Errorf("invalid parameter %q: %w", param, qe.Err)}
		}
		return &apiError{string(qe.Kind), qe.Err}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return &apiError{errCanceled, err}
	case errors.Is(err, context.DeadlineExceeded):
		return &apiError{errTimeout, err}
	}
	return &apiError{errExec, err}
}

func (a *API) withTimeout(r *http.Request) (context.Context, context.CancelFunc, *result) {
	ctx := r.Context()
	v := r.FormValue("timeout")
	if v == "" {
		return ctx, func() {}, nil
	}
	d, err := parseDuration(v)
	if err != nil {
		res := invalidParam("timeout", err)
		return ctx, func() {}, &res
	}
	if d <= 0 {
		res := invalidParam("timeout", fmt.Errorf("timeout must be positive, got %s", d))
		return ctx, func() {}, &res
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	return ctx, cancel, nil
}

func (a *API) query(r *http.Request) result {
	ts, err := parseTimeParam(r, "time", a.o.Now())
	if err != nil {
		return invalidParam("time", err)
	}
	ctx, cancel, bad := a.withTimeout(r)
	defer cancel()
	if bad != nil {
		return *bad
	}
	res, err := a.q.Query(ctx, r.FormValue("query"), ts)
	if err != nil {
		return result{err: fromStoreErr(err, "query")}
	}
	return result{data: queryData(res), warnings: res.Warnings, infos: res.Infos}
}

func (a *API) queryRange(r *http.Request) result {
	start, err := parseTime(r.FormValue("start"))
	if err != nil {
		return invalidParam("start", err)
	}
	end, err := parseTime(r.FormValue("end"))
	if err != nil {
		return invalidParam("end", err)
	}
	if end.Before(start) {
		return invalidParam("end", errors.New("end timestamp must not be before start time"))
	}
	step, err := parseDuration(r.FormValue("step"))
	if err != nil {
		return invalidParam("step", err)
	}
	if step <= 0 {
		return invalidParam("step", errors.New("zero or negative query resolution step widths are not accepted. Try a positive integer"))
	}
	if end.Sub(start)/step > store.MaxPoints {
		return result{err: &apiError{errBadData, errors.New("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)")}}
	}
	ctx, cancel, bad := a.withTimeout(r)
	defer cancel()
	if bad != nil {
		return *bad
	}
	res, err := a.q.QueryRange(ctx, r.FormValue("query"), start, end, step)
	if err != nil {
		return result{err: fromStoreErr(err, "query")}
	}
	return result{data: queryData(res), warnings: res.Warnings, infos: res.Infos}
}

// span parses start and end; a missing one is unbounded (zero time).
func span(r *http.Request) (time.Time, time.Time, *result) {
	var start, end time.Time
	var err error
	if start, err = parseTimeParam(r, "start", time.Time{}); err != nil {
		res := invalidParam("start", err)
		return start, end, &res
	}
	if end, err = parseTimeParam(r, "end", time.Time{}); err != nil {
		res := invalidParam("end", err)
		return start, end, &res
	}
	return start, end, nil
}

// parseLimit reads the optional "limit" parameter (0: no limit).
func parseLimit(r *http.Request) (int, *result) {
	v := r.FormValue("limit")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err == nil && n < 0 {
		err = errors.New("limit must be non-negative")
	}
	if err != nil {
		res := invalidParam("limit", err)
		return 0, &res
	}
	return n, nil
}

// truncated is the warning Prometheus gives when limit cut the answer.
const truncated = "results truncated due to limit"

func limitStrings(vals []string, limit int) result {
	if limit > 0 && len(vals) > limit {
		return result{data: vals[:limit], warnings: []string{truncated}}
	}
	return result{data: vals}
}

func (a *API) labelNames(r *http.Request) result {
	limit, bad := parseLimit(r)
	if bad != nil {
		return *bad
	}
	start, end, bad := span(r)
	if bad != nil {
		return *bad
	}
	names, err := a.q.LabelNames(r.Context(), r.Form["match[]"], start, end)
	if err != nil {
		return result{err: fromStoreErr(err, "")}
	}
	return limitStrings(names, limit)
}

func (a *API) labelValues(r *http.Request) result {
	name := r.PathValue("name")
	limit, bad := parseLimit(r)
	if bad != nil {
		return *bad
	}
	start, end, bad := span(r)
	if bad != nil {
		return *bad
	}
	vals, err := a.q.LabelValues(r.Context(), name, r.Form["match[]"], start, end)
	if err != nil {
		return result{err: fromStoreErr(err, "")}
	}
	return limitStrings(vals, limit)
}

func (a *API) series(r *http.Request) result {
	if len(r.Form["match[]"]) == 0 {
		return result{err: &apiError{errBadData, errors.New("no match[] parameter provided")}}
	}
	limit, bad := parseLimit(r)
	if bad != nil {
		return *bad
	}
	start, end, bad := span(r)
	if bad != nil {
		return *bad
	}
	sets, err := a.q.Series(r.Context(), r.Form["match[]"], start, end)
	if err != nil {
		return result{err: fromStoreErr(err, "")}
	}
	var warnings []string
	if limit > 0 && len(sets) > limit {
		sets, warnings = sets[:limit], []string{truncated}
	}
	out := make([]map[string]string, len(sets))
	for i, ls := range sets {
		out[i] = labelMap(ls)
	}
	return result{data: out, warnings: warnings}
}

type metadataEntry struct {
	Type string `json:"type"`
	Help string `json:"help"`
	Unit string `json:"unit"`
}

// metadata answers with the documented metadata of loadwatch's own series
// (the store keeps no metadata of its own).
func (a *API) metadata(r *http.Request) result {
	metric := r.FormValue("metric")
	out := map[string][]metadataEntry{}
	for _, m := range store.Metrics {
		if metric != "" && metric != m.Name {
			continue
		}
		out[m.Name] = []metadataEntry{{Type: m.Type, Help: m.Help, Unit: m.Unit}}
	}
	return result{data: out}
}

type queryResult struct {
	ResultType string `json:"resultType"`
	Result     any    `json:"result"`
}

type vectorSample struct {
	Metric map[string]string `json:"metric"`
	Value  point             `json:"value"`
}

type matrixSeries struct {
	Metric map[string]string `json:"metric"`
	Values []point           `json:"values"`
}

func queryData(res *store.Result) queryResult {
	switch res.Type {
	case store.TypeVector:
		out := make([]vectorSample, len(res.Series))
		for i, s := range res.Series {
			out[i] = vectorSample{Metric: labelMap(s.Labels), Value: point(s.Points[0])}
		}
		return queryResult{ResultType: string(res.Type), Result: out}
	case store.TypeMatrix:
		out := make([]matrixSeries, len(res.Series))
		for i, s := range res.Series {
			pts := make([]point, len(s.Points))
			for j, p := range s.Points {
				pts[j] = point(p)
			}
			out[i] = matrixSeries{Metric: labelMap(s.Labels), Values: pts}
		}
		return queryResult{ResultType: string(res.Type), Result: out}
	case store.TypeString:
		return queryResult{ResultType: string(res.Type), Result: stringPoint{T: res.Scalar.T, S: res.String}}
	}
	return queryResult{ResultType: string(res.Type), Result: point(res.Scalar)}
}

func labelMap(ls []store.Label) map[string]string {
	m := make(map[string]string, len(ls))
	for _, l := range ls {
		m[l.Name] = l.Value
	}
	return m
}

// point encodes as Prometheus does: [seconds, "value"].
type point store.Point

func (p point) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 40)
	b = append(b, '[')
	b = appendTimestamp(b, p.T)
	b = append(b, ',', '"')
	b = appendFloat(b, p.V)
	b = append(b, '"', ']')
	return b, nil
}

type stringPoint struct {
	T int64
	S string
}

func (p stringPoint) MarshalJSON() ([]byte, error) {
	s, err := json.Marshal(p.S)
	if err != nil {
		return nil, err
	}
	b := append([]byte{'['}, appendTimestamp(nil, p.T)...)
	b = append(b, ',')
	b = append(b, s...)
	return append(b, ']'), nil
}

// appendTimestamp writes milliseconds as seconds with up to three decimals,
// as Prometheus' jsonutil.MarshalTimestamp does.
func appendTimestamp(b []byte, t int64) []byte {
	if t < 0 {
		b = append(b, '-')
		t = -t
	}
	b = strconv.AppendInt(b, t/1000, 10)
	if f := t % 1000; f != 0 {
		b = append(b, '.')
		if f < 100 {
			b = append(b, '0')
		}
		if f < 10 {
			b = append(b, '0')
		}
		b = strconv.AppendInt(b, f, 10)
	}
	return b
}

func appendFloat(b []byte, f float64) []byte {
	switch {
	case math.IsInf(f, 1):
		return append(b, "+Inf"...)
	case math.IsInf(f, -1):
		return append(b, "-Inf"...)
	case math.IsNaN(f):
		return append(b, "NaN"...)
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64)
}

func parseTimeParam(r *http.Request, name string, def time.Time) (time.Time, error) {
	v := r.FormValue(name)
	if v == "" {
		return def, nil
	}
	t, err := parseTime(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid time value for '%s': %w", name, err)
	}
	return t, nil
}

// The boundary times Prometheus clients send for "unbounded".
var (
	minTime = time.Unix(math.MinInt64/1000+62135596801, 0).UTC()
	maxTime = time.Unix(math.MaxInt64/1000-62135596801, 999999999).UTC()
)

// parseTime accepts Unix seconds (with fractions, rounded to ms) or RFC 3339.
func parseTime(s string) (time.Time, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 9.2e15 {
			return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
		}
		sec, frac := math.Modf(f)
		frac = math.Round(frac*1000) / 1000
		return time.Unix(int64(sec), int64(frac*float64(time.Second))).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	switch s {
	case minTime.Format(time.RFC3339Nano):
		return minTime, nil
	case maxTime.Format(time.RFC3339Nano):
		return maxTime, nil
	}
	return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
}

// parseDuration accepts seconds (with fractions) or a Prometheus duration
// such as "1m30s" or "5m".
func parseDuration(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		ts := f * float64(time.Second)
		if math.IsNaN(ts) || ts >= float64(math.MaxInt64) || ts < float64(math.MinInt64) {
			return 0, fmt.Errorf("cannot parse %q to a valid duration. It overflows int64", s)
		}
		return time.Duration(ts), nil
	}
	if d, err := parsePromDuration(s); err == nil {
		return d, nil
	}
	return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
}

// parsePromDuration parses Prometheus' duration syntax: a sequence of
// number+unit with units y, w, d, h, m, s, ms in that order.
func parsePromDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("empty duration")
	}
	units := []struct {
		name string
		d    time.Duration
	}{
		{"y", 365 * 24 * time.Hour}, {"w", 7 * 24 * time.Hour}, {"d", 24 * time.Hour},
		{"h", time.Hour}, {"ms", time.Millisecond}, {"m", time.Minute}, {"s", time.Second},
	}
	order := map[string]int{"y": 0, "w": 1, "d": 2, "h": 3, "m": 4, "s": 5, "ms": 6}
	var total time.Duration
	last := -1
	for s != "" {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == 0 || i > 12 {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		n, _ := strconv.ParseInt(s[:i], 10, 64)
		s = s[i:]
		matched := false
		for _, u := range units {
			if strings.HasPrefix(s, u.name) {
				if order[u.name] <= last {
					return 0, errors.New("units out of order")
				}
				last = order[u.name]
				if n > int64(math.MaxInt64/u.d) || total > math.MaxInt64-time.Duration(n)*u.d {
					return 0, errors.New("duration overflows")
				}
				total += time.Duration(n) * u.d
				s = s[len(u.name):]
				matched = true
				break
			}
		}
		if !matched {
			return 0, fmt.Errorf("unknown unit in %q", s)
		}
	}
	return total, nil
}
