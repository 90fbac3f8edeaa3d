package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"loadwatch/internal/store"
)

// HTTPQuerier queries a running server's Prometheus-compatible API
// (/api/v1/query), so that export works while `loadwatch serve` holds the
// store.
type HTTPQuerier struct {
	// Base is the server's URL, e.g. http://127.0.0.1:8080.
	Base string
	// Token is an API token with scope read (needed when the server
	// runs with --auth-read); empty sends none.
	Token  string
	Client *http.Client // [http.DefaultClient]
}

// maxResponse bounds one query's answer (a 6 h chunk of 1 s data is
// about 2 MB of JSON per series).
const maxResponse = 1 << 30

// promResponse is Prometheus' query API envelope.
type promResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
}

type promData struct {
	ResultType string            `json:"resultType"`
	Result     []json.RawMessage `json:"result"`
}

type promSeries struct {
	Metric map[string]string `json:"metric"`
	Values [][2]any          `json:"values"`
	Value  [2]any            `json:"value"`
}

// Query implements Querier over HTTP (POST, form-encoded, as Prometheus
// accepts). Vector and matrix results are converted; scalars and strings
// are refused (export does not ask for them).
func (h HTTPQuerier) Query(ctx context.Context, q string, t time.Time) (*store.Result, error) {
	c := h.Client
	if c == nil {
		c = http.DefaultClient
	}
	form := url.Values{"query": {q}, "time": {formatMillis(store.Millis(t))}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(h.Base, "/")+"/api/v1/query", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if h.Token != "" {
		req.Header.Set("Authorization", "Bearer "+h.Token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var pr promResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponse)).Decode(&pr); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", req.URL, resp.Status, err)
	}
	if pr.Status != "success" {
		msg := pr.Error
		if msg == "" {
			msg = resp.Status
		}
		return nil, fmt.Errorf("%s: %s (%s)", req.URL, msg, pr.ErrorType)
	}
	return convertProm(pr)
}

func convertProm(pr promResponse) (*store.Result, error) {
	var d promData
	if err := json.Unmarshal(pr.Data, &d); err != nil {
		return nil, fmt.Errorf("query answer: %w", err)
	}
	res := &store.Result{Type: store.ValueType(d.ResultType), Warnings: pr.Warnings}
	if res.Type != store.TypeMatrix && res.Type != store.TypeVector {
		return nil, fmt.Errorf("query answer: result type %q not supported", d.ResultType)
	}
	for _, raw := range d.Result {
		var ps promSeries
		if err := json.Unmarshal(raw, &ps); err != nil {
			return nil, fmt.Errorf("query answer: %w", err)
		}
		s := store.Series{}
		for n, v := range ps.Metric {
			s.Labels = append(s.Labels, store.Label{Name: n, Value: v})
		}
		vals := ps.Values
		if res.Type == store.TypeVector {
			vals = [][2]any{ps.Value}
		}
		for _, v := range vals {
			p, err := promPoint(v)
			if err != nil {
				return nil, fmt.Errorf("query answer: %w", err)
			}
			s.Points = append(s.Points, p)
		}
		res.Series = append(res.Series, s)
	}
	return res, nil
}

// promPoint reads [1700000000.123, "1.5"].
func promPoint(v [2]any) (store.Point, error) {
	ts, ok := v[0].(float64)
	if !ok {
		return store.Point{}, errors.New("timestamp is not a number")
	}
	s, ok := v[1].(string)
	if !ok {
		return store.Point{}, errors.New("value is not a string")
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return store.Point{}, fmt.Errorf("value %q: %w", s, err)
	}
	return store.Point{T: int64(math.Round(ts * 1000)), V: f}, nil
}
