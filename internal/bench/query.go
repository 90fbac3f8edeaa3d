package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// API reads what a server stored through its Prometheus-compatible query
// API and its /metrics.
type API struct {
	Base   string // http://host:port
	Token  string // API token, when the server requires one for reads
	Client *http.Client
}

func (a *API) client() *http.Client {
	if a.Client != nil {
		return a.Client
	}
	return &http.Client{Timeout: 2 * time.Minute}
}

func (a *API) get(ctx context.Context, path string, q url.Values) ([]byte, error) {
	u := strings.TrimRight(a.Base, "/") + path
	if q != nil {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if a.Token != "" {
		req.Header.Set("Authorization", "Bearer "+a.Token)
	}
	resp, err := a.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("bench: read %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("bench: GET %s: %s: %.200s", path, resp.Status, b)
	}
	return b, nil
}

// promNumber is a JSON number or Prometheus' quoted sample value.
type promNumber float64

func (p *promNumber) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return err
	}
	*p = promNumber(v)
	return nil
}

// QuerySeries is one series of an instant query's answer: its labels and
// its samples (timestamps in milliseconds). A vector has one sample.
type QuerySeries struct {
	Labels  map[string]string
	Samples []Sample
}

// Sample is one stored value.
type Sample struct {
	T int64 // milliseconds
	V float64
}

// Query runs an instant query at t and returns a vector's or a matrix's
// series.
func (a *API) Query(ctx context.Context, q string, t time.Time) ([]QuerySeries, error) {
	v := url.Values{"query": {q}, "time": {strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)}}
	b, err := a.get(ctx, "/api/v1/query", v)
	if err != nil {
		return nil, err
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  []promNumber      `json:"value"`
				Values [][]promNumber    `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("bench: query answer: %w", err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("bench: query %q: %s", q, r.Error)
	}
	out := make([]QuerySeries, 0, len(r.Data.Result))
	for _, s := range r.Data.Result {
		qs := QuerySeries{Labels: s.Metric}
		pts := s.Values
		if len(s.Value) == 2 {
			pts = [][]promNumber{s.Value}
		}
		for _, p := range pts {
			if len(p) != 2 {
				return nil, fmt.Errorf("bench: query %q: a point of %d values", q, len(p))
			}
			qs.Samples = append(qs.Samples, Sample{T: int64(math.Round(float64(p[0]) * 1000)), V: float64(p[1])})
		}
		out = append(out, qs)
	}
	return out, nil
}

// Metrics scrapes /metrics and returns every sample line as
// `name{labels}` -> value (labels as the server wrote them).
func (a *API) Metrics(ctx context.Context) (map[string]float64, error) {
	b, err := a.get(ctx, "/metrics", nil)
	if err != nil {
		return nil, err
	}
	return parseExposition(string(b))
}

func parseExposition(s string) (map[string]float64, error) {
	m := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return nil, fmt.Errorf("bench: metrics line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("bench: metrics line %q: %w", line, err)
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// labelValue extracts label name's value from a `name{a="x",b="y"}` key.
func labelValue(key, name string) string {
	i := strings.Index(key, name+`="`)
	if i < 0 {
		return ""
	}
	rest := key[i+len(name)+2:]
	j := strings.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return rest[:j]
}

// Rejections sums loadwatch_ingest_rejected_total by reason and
// loadwatch_mqtt_refused_messages_total by code, plus the ACL denials, from
// one scrape.
func Rejections(m map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		switch {
		case strings.HasPrefix(k, "loadwatch_ingest_rejected_total{"):
			out[labelValue(k, "reason")] += v
		case strings.HasPrefix(k, "loadwatch_mqtt_acl_denied_total"):
			out["acl_denied"] += v
		}
	}
	return out
}
