package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// ValueType is the type of a query result, as Prometheus names it.
type ValueType string

// The result types of PromQL.
const (
	TypeVector ValueType = "vector"
	TypeMatrix ValueType = "matrix"
	TypeScalar ValueType = "scalar"
	TypeString ValueType = "string"
)

// Point is one value at a time in milliseconds.
type Point struct {
	T int64
	V float64
}

// Series is one result series: labels sorted by name (including "__name__"
// when the expression keeps it) and its points in time order. A vector has
// exactly one point per series.
type Series struct {
	Labels []Label
	Points []Point
}

// Result is the answer to a PromQL query.
type Result struct {
	Type     ValueType
	Series   []Series // vector and matrix
	Scalar   Point    // scalar
	String   string   // string (its time is in Scalar.T)
	Warnings []string
	Infos    []string
}

// ErrorKind classifies a query error the way Prometheus' HTTP API does.
type ErrorKind string

// The kinds of query error (Prometheus' errorType values).
const (
	KindBadData   ErrorKind = "bad_data"  // the query or a parameter is malformed
	KindExecution ErrorKind = "execution" // the query failed while running
	KindTimeout   ErrorKind = "timeout"   // the query took longer than allowed
	KindCanceled  ErrorKind = "canceled"  // the caller went away
	KindInternal  ErrorKind = "internal"  // the storage failed
)

// QueryError is a failed query with its kind. Use errors.As.
type QueryError struct {
	Kind ErrorKind
	Err  error
}

func (e *QueryError) Error() string { return e.Err.Error() }
func (e *QueryError) Unwrap() error { return e.Err }

const maxAnnotations = 10

// Query evaluates an instant query at t.
func (s *Store) Query(ctx context.Context, q string, t time.Time) (*Result, error) {
	qry, err := s.engine.NewInstantQuery(ctx, s.db, promql.NewPrometheusQueryOpts(false, 0, nil), q, t)
	if err != nil {
		return nil, &QueryError{Kind: KindBadData, Err: err}
	}
	defer qry.Close()
	return convert(q, qry.Exec(ctx))
}

// MaxPoints is the most points per series a range query may ask for, as in
// Prometheus.
const MaxPoints = 11000

// QueryRange evaluates a range query from start to end (inclusive) every step.
func (s *Store) QueryRange(ctx context.Context, q string, start, end time.Time, step time.Duration) (*Result, error) {
	switch {
	case end.Before(start):
		return nil, &QueryError{Kind: KindBadData, Err: errors.New("end timestamp must not be before start time")}
	case step <= 0:
		return nil, &QueryError{Kind: KindBadData, Err: errors.New("zero or negative query resolution step widths are not accepted. Try a positive integer")}
	case end.Sub(start)/step > MaxPoints:
		return nil, &QueryError{Kind: KindBadData, Err: errors.New("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)")}
	}
	qry, err := s.engine.NewRangeQuery(ctx, s.db, promql.NewPrometheusQueryOpts(false, 0, nil), q, start, end, step)
	if err != nil {
		return nil, &QueryError{Kind: KindBadData, Err: err}
	}
	defer qry.Close()
	return convert(q, qry.Exec(ctx))
}

func convert(q string, res *promql.Result) (*Result, error) {
	if res.Err != nil {
		return nil, execError(res.Err)
	}
	out := &Result{}
	out.Warnings, out.Infos = res.Warnings.AsStrings(q, maxAnnotations, maxAnnotations)
	switch v := res.Value.(type) {
	case promql.Vector:
		out.Type = TypeVector
		out.Series = make([]Series, 0, len(v))
		for _, smp := range v {
			if smp.H != nil {
				continue // the store holds no histograms
			}
			out.Series = append(out.Series, Series{Labels: fromLabels(smp.Metric), Points: []Point{{T: smp.T, V: smp.F}}})
		}
	case promql.Matrix:
		out.Type = TypeMatrix
		out.Series = make([]Series, 0, len(v))
		for _, ser := range v {
			if len(ser.Floats) == 0 {
				continue
			}
			pts := make([]Point, len(ser.Floats))
			for i, p := range ser.Floats {
				pts[i] = Point{T: p.T, V: p.F}
			}
			out.Series = append(out.Series, Series{Labels: fromLabels(ser.Metric), Points: pts})
		}
	case promql.Scalar:
		out.Type = TypeScalar
		out.Scalar = Point{T: v.T, V: v.V}
	case promql.String:
		out.Type = TypeString
		out.Scalar = Point{T: v.T}
		out.String = v.V
	default:
		return nil, &QueryError{Kind: KindInternal, Err: fmt.Errorf("unexpected result type %T", res.Value)}
	}
	return out, nil
}

func execError(err error) error {
	var eqc promql.ErrQueryCanceled
	var eqt promql.ErrQueryTimeout
	var es promql.ErrStorage
	switch {
	case errors.As(err, &eqc), errors.Is(err, context.Canceled):
		return &QueryError{Kind: KindCanceled, Err: err}
	case errors.As(err, &eqt), errors.Is(err, context.DeadlineExceeded):
		return &QueryError{Kind: KindTimeout, Err: err}
	case errors.As(err, &es):
		return &QueryError{Kind: KindInternal, Err: err}
	}
	return &QueryError{Kind: KindExecution, Err: err}
}

func fromLabels(ls labels.Labels) []Label {
	out := make([]Label, 0, ls.Len())
	ls.Range(func(l labels.Label) { out = append(out, Label{Name: l.Name, Value: l.Value}) })
	return out
}

// parseMatchers parses series selectors such as `up{job="x"}`.
func (s *Store) parseMatchers(selectors []string) ([][]*labels.Matcher, error) {
	sets, err := s.parser.ParseMetricSelectors(selectors)
	if err != nil {
		return nil, &QueryError{Kind: KindBadData, Err: err}
	}
	return sets, nil
}

func span(start, end time.Time) (int64, int64) {
	mint, maxt := int64(math.MinInt64), int64(math.MaxInt64)
	if !start.IsZero() {
		mint = start.UnixMilli()
	}
	if !end.IsZero() {
		maxt = end.UnixMilli()
	}
	return mint, maxt
}

// Series returns the label sets of the series that any of the selectors
// matches and that have samples between start and end (zero times mean
// unbounded). At least one selector is required.
func (s *Store) Series(ctx context.Context, selectors []string, start, end time.Time) ([][]Label, error) {
	if len(selectors) == 0 {
		return nil, &QueryError{Kind: KindBadData, Err: errors.New("no match[] parameter provided")}
	}
	sets, err := s.parseMatchers(selectors)
	if err != nil {
		return nil, err
	}
	mint, maxt := span(start, end)
	q, err := s.db.Querier(mint, maxt)
	if err != nil {
		return nil, &QueryError{Kind: KindExecution, Err: err}
	}
	defer q.Close()
	hints := &storage.SelectHints{Start: mint, End: maxt}
	var sets2 []storage.SeriesSet
	for _, ms := range sets {
		sets2 = append(sets2, q.Select(ctx, true, hints, ms...))
	}
	set := storage.NewMergeSeriesSet(sets2, 0, storage.ChainedSeriesMerge)
	out := [][]Label{}
	var it chunkenc.Iterator
	for set.Next() {
		// A series whose samples were all deleted stays in the head until
		// its next compaction; it has no samples, so it is no answer.
		it = set.At().Iterator(it)
		if it.Next() == chunkenc.ValNone {
			continue
		}
		out = append(out, fromLabels(set.At().Labels()))
	}
	if err := set.Err(); err != nil {
		return nil, &QueryError{Kind: KindExecution, Err: err}
	}
	return out, nil
}

// LabelNames returns the sorted label names of the series that the
// selectors match (all series when there are none) between start and end.
func (s *Store) LabelNames(ctx context.Context, selectors []string, start, end time.Time) ([]string, error) {
	return s.labelQuery(ctx, selectors, start, end, func(q storage.Querier, ms []*labels.Matcher) ([]string, error) {
		names, _, err := q.LabelNames(ctx, nil, ms...)
		return names, err
	})
}

// LabelValues returns the sorted values of label name among the series that
// the selectors match (all series when there are none) between start and end.
func (s *Store) LabelValues(ctx context.Context, name string, selectors []string, start, end time.Time) ([]string, error) {
	if !validName(name, false) {
		return nil, &QueryError{Kind: KindBadData, Err: fmt.Errorf("invalid label name: %q", name)}
	}
	return s.labelQuery(ctx, selectors, start, end, func(q storage.Querier, ms []*labels.Matcher) ([]string, error) {
		vals, _, err := q.LabelValues(ctx, name, nil, ms...)
		return vals, err
	})
}

func (s *Store) labelQuery(ctx context.Context, selectors []string, start, end time.Time, f func(storage.Querier, []*labels.Matcher) ([]string, error)) ([]string, error) {
	sets := [][]*labels.Matcher{nil}
	if len(selectors) > 0 {
		var err error
		if sets, err = s.parseMatchers(selectors); err != nil {
			return nil, err
		}
	}
	mint, maxt := span(start, end)
	q, err := s.db.Querier(mint, maxt)
	if err != nil {
		return nil, &QueryError{Kind: KindExecution, Err: err}
	}
	defer q.Close()
	out := []string{}
	for _, ms := range sets {
		vals, err := f(q, ms)
		if err != nil {
			return nil, &QueryError{Kind: KindExecution, Err: err}
		}
		out = append(out, vals...)
	}
	return sortedUnique(out), nil
}

// ParseExpr checks that q is valid PromQL, for callers that validate
// dashboards or alert rules without running them.
func (s *Store) ParseExpr(q string) error {
	if _, err := s.parser.ParseExpr(q); err != nil {
		return &QueryError{Kind: KindBadData, Err: err}
	}
	return nil
}
