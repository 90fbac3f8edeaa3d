package labels

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"loadwatch/internal/classify"
	"loadwatch/internal/features"
	"loadwatch/internal/forest"
	"loadwatch/internal/power"
	"loadwatch/internal/readingscsv"
	"loadwatch/internal/store"
)

// Querier reads raw samples (*store.Store implements it).
type Querier interface {
	Query(ctx context.Context, q string, t time.Time) (*store.Result, error)
}

// Holder is the model in use (*classify.Holder implements it).
type Holder interface {
	Current() *classify.Loaded
	Previous() *classify.Loaded
	LoadFile(path string) error
	Rollback() error
}

// Config configures the retraining service.
type Config struct {
	Spans  *Store  // required
	Q      Querier // required: readings of the spans
	Holder Holder  // required
	// Bundled returns the bundled training rows (labelled readings CSV);
	// nil: train on the labelled spans alone.
	Bundled func(ctx context.Context) ([]readingscsv.Row, error)
	// ModelDir is where new models are written (model-v<N>.json).
	ModelDir string
	// Forest is the training configuration; zero: the current model's
	// (or forest.DefaultConfig with 50 trees).
	Forest *forest.Config
	// HoldOut is the share of each labelled span (its end) kept for the
	// evaluation. Default 0.25.
	HoldOut float64
	// User names who made a request (e.g. web.User); nil: "".
	User func(context.Context) string
	Now  func() time.Time
	Log  *slog.Logger
}

// Score is a model's result on the held-out rows.
type Score struct {
	Accuracy float64 `json:"accuracy"`
	MacroF1  float64 `json:"macro_f1"`
}

// Evaluation compares the current model and the candidate on the same
// held-out rows.
type Evaluation struct {
	TestRows  int    `json:"test_rows"`
	TrainRows int    `json:"train_rows"`
	Current   *Score `json:"current,omitempty"` // nil without a current model
	Candidate *Score `json:"candidate"`
	Note      string `json:"note"`
}

// Job states.
const (
	JobRunning   = "running"
	JobDone      = "done" // a candidate is ready
	JobFailed    = "failed"
	JobActivated = "activated"
)

// Job is a retraining run.
type Job struct {
	ID         string      `json:"id"`
	State      string      `json:"state"`
	Stage      string      `json:"stage"`
	Progress   float64     `json:"progress"` // 0..1
	Error      string      `json:"error,omitempty"`
	Evaluation *Evaluation `json:"evaluation,omitempty"`
	Version    int         `json:"version,omitempty"` // set once activated
	User       string      `json:"user,omitempty"`
	Started    time.Time   `json:"started"`
	Finished   *time.Time  `json:"finished,omitempty"`
	candidate  *forest.Model
}

// ModelJSON describes a loaded model.
type ModelJSON struct {
	Version  string    `json:"version"` // "v<N>" for retrained models, else "base"
	Source   string    `json:"source"`
	SHA256   string    `json:"sha256,omitempty"`
	LoadedAt time.Time `json:"loaded_at"`
	Classes  []string  `json:"classes"`
}

// StatusJSON is GET /ui/api/retrain.
type StatusJSON struct {
	Model    *ModelJSON `json:"model"`
	Previous *ModelJSON `json:"previous"`
	Job      *Job       `json:"job"`
}

// Service runs retraining jobs, one at a time.
type Service struct {
	cfg Config
	mu  sync.Mutex
	job *Job
	seq int
	wg  sync.WaitGroup
}

// New checks cfg.
func New(cfg Config) (*Service, error) {
	if cfg.Spans == nil || cfg.Q == nil || cfg.Holder == nil || cfg.ModelDir == "" {
		return nil, errors.New("labels: need Spans, Q, Holder and ModelDir")
	}
	if cfg.HoldOut <= 0 || cfg.HoldOut >= 1 {
		cfg.HoldOut = 0.25
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.User == nil {
		cfg.User = func(context.Context) string { return "" }
	}
	return &Service{cfg: cfg}, nil
}

var versionRE = regexp.MustCompile(`model-v(\d+)\.json$`)

func describe(l *classify.Loaded) *ModelJSON {
	if l == nil {
		return nil
	}
	v := "base"
	if m := versionRE.FindStringSubmatch(l.Source); m != nil {
		v = "v" + m[1]
	}
	return &ModelJSON{Version: v, Source: filepath.Base(l.Source), SHA256: l.SHA256, LoadedAt: l.LoadedAt.UTC(), Classes: l.Model.Classes}
}

// Status returns the models and the last job.
func (s *Service) Status() StatusJSON {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := StatusJSON{Model: describe(s.cfg.Holder.Current()), Previous: describe(s.cfg.Holder.Previous())}
	if s.job != nil {
		j := *s.job
		out.Job = &j
	}
	return out
}

// ErrBusy is returned when a job is already running.
var ErrBusy = errors.New("a retraining job is already running")

// ErrNoLabels is returned when there is nothing to train on.
var ErrNoLabels = errors.New("label at least one span first")

// Start begins a retraining job in the background. ctx bounds the job.
func (s *Service) Start(ctx context.Context, user string) (Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.job != nil && s.job.State == JobRunning {
		return Job{}, ErrBusy
	}
	if len(s.cfg.Spans.List("")) == 0 {
		return Job{}, ErrNoLabels
	}
	s.seq++
	j := &Job{ID: strconv.Itoa(s.seq), State: JobRunning, Stage: "starting", User: user, Started: s.cfg.Now().UTC()}
	s.job = j
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		m, ev, err := s.train(ctx, j)
		s.mu.Lock()
		defer s.mu.Unlock()
		now := s.cfg.Now().UTC()
		j.Finished = &now
		if err != nil {
			j.State, j.Error, j.Stage = JobFailed, err.Error(), "failed"
			s.cfg.Log.Warn("labels: retraining failed", "error", err)
			return
		}
		j.State, j.Stage, j.Progress, j.Evaluation, j.candidate = JobDone, "done", 1, ev, m
	}()
	return *j, nil
}

// Wait waits for the background job to finish (for tests and shutdown).
func (s *Service) Wait() { s.wg.Wait() }

func (s *Service) progress(j *Job, stage string, p float64) {
	s.mu.Lock()
	j.Stage, j.Progress = stage, p
	s.mu.Unlock()
}

// readings returns the stored readings of device in (from, to], oldest first.
func (s *Service) readings(ctx context.Context, device string, from, to time.Time) ([]power.Reading, error) {
	secs := int64(math.Ceil(to.Sub(from).Seconds()))
	sel := `{` + store.LabelDevice + `="` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(device) + `"}[` + strconv.FormatInt(secs, 10) + `s]`
	byT := map[int64]*power.Reading{}
	for _, f := range []struct {
		metric string
		set    func(r *power.Reading, v float64)
	}{
		{store.MetricPower, func(r *power.Reading, v float64) { r.Power, r.Has = power.Watts(v), r.Has|power.FieldPower }},
		{store.MetricVoltage, func(r *power.Reading, v float64) { r.Voltage, r.Has = power.Volts(v), r.Has|power.FieldVoltage }},
		{store.MetricCurrent, func(r *power.Reading, v float64) { r.Current, r.Has = power.Amperes(v), r.Has|power.FieldCurrent }},
		{store.MetricPowerFactor, func(r *power.Reading, v float64) { r.PF, r.Has = power.PowerFactor(v), r.Has|power.FieldPF }},
		{store.MetricFrequency, func(r *power.Reading, v float64) { r.Frequency, r.Has = power.Hertz(v), r.Has|power.FieldFrequency }},
	} {
		res, err := s.cfg.Q.Query(ctx, f.metric+sel, to)
		if err != nil {
			return nil, fmt.Errorf("labels: readings of %s: %w", device, err)
		}
		for _, ser := range res.Series {
			for _, p := range ser.Points {
				r := byT[p.T]
				if r == nil {
					r = &power.Reading{Time: time.UnixMilli(p.T).UTC()}
					byT[p.T] = r
				}
				f.set(r, p.V)
			}
		}
	}
	out := make([]power.Reading, 0, len(byT))
	for _, r := range byT {
		if r.Is(power.FieldPower) {
			out = append(out, *r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

// rows turns the labelled spans into training and held-out rows: the last
// HoldOut of each span (in time) is held out.
func (s *Service) rows(ctx context.Context) (train, test []readingscsv.Row, err error) {
	for i, sp := range s.cfg.Spans.List("") {
		rs, err := s.readings(ctx, sp.Device, sp.From, sp.To)
		if err != nil {
			return nil, nil, err
		}
		cut := int(math.Round(float64(len(rs)) * (1 - s.cfg.HoldOut)))
		// Each span is its own stream, so windows never join two spans.
		dev := fmt.Sprintf("%s#%d", sp.Device, i)
		for k, r := range rs {
			row := readingscsv.Row{Device: dev, Label: sp.Label, Reading: r, Line: k + 2}
			if k < cut {
				train = append(train, row)
			} else {
				test = append(test, row)
			}
		}
	}
	return train, test, nil
}

func (s *Service) train(ctx context.Context, j *Job) (*forest.Model, *Evaluation, error) {
	s.progress(j, "reading the labelled spans", 0.05)
	train, test, err := s.rows(ctx)
	if err != nil {
		return nil, nil, err
	}
	if len(train) == 0 {
		return nil, nil, errors.New("the labelled spans hold no stored readings")
	}
	if s.cfg.Bundled != nil {
		s.progress(j, "reading the bundled data", 0.1)
		b, err := s.cfg.Bundled(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("bundled data: %w", err)
		}
		train = append(b, train...)
	}
	cur := s.cfg.Holder.Current()
	set, cfg := features.SetLW1, forest.DefaultConfig()
	cfg.Trees = 50
	if cur != nil && !cur.Model.Legacy && cur.Model.FeatureSet != "" {
		set, cfg = cur.Model.FeatureSet, cur.Model.Config
	}
	if s.cfg.Forest != nil {
		cfg = *s.cfg.Forest
	}
	s.progress(j, "computing features", 0.15)
	d, err := classify.BuildDataset(set, features.Config{}, train)
	if err != nil {
		return nil, nil, err
	}
	cfg.Progress = func(done, total int) {
		s.progress(j, fmt.Sprintf("training tree %d of %d", done, total), 0.2+0.7*float64(done)/float64(max(total, 1)))
	}
	f, err := forest.Train(ctx, d, cfg)
	if err != nil {
		return nil, nil, err
	}
	cfg.Progress = nil
	m := &forest.Model{FormatVersion: forest.FormatVersion, Kind: forest.KindLoadwatch, FeatureSet: set, Features: d.Features,
		Classes: d.Classes, DataHash: forest.HashDataset(d), TrainedAt: s.cfg.Now().UTC(), Config: cfg, Forest: f}
	if err := classify.CheckModel(m); err != nil {
		return nil, nil, err
	}
	s.progress(j, "evaluating against the current model", 0.92)
	ev := &Evaluation{TestRows: len(test), TrainRows: len(train),
		Note: fmt.Sprintf("the last %.0f %% of each labelled span, never trained on", s.cfg.HoldOut*100)}
	if len(test) > 0 {
		ev.Candidate, err = score(m, test)
		if err != nil {
			return nil, nil, err
		}
		if cur != nil {
			if ev.Current, err = score(cur.Model, test); err != nil {
				ev.Current, ev.Note = nil, ev.Note+"; the current model could not be scored: "+err.Error()
			}
		}
	} else {
		ev.Candidate = &Score{}
		ev.Note = "no held-out rows (spans too short)"
	}
	return m, ev, nil
}

// score predicts test rows with m (features computed with m's own set)
// and scores them against the labels.
func score(m *forest.Model, test []readingscsv.Row) (*Score, error) {
	if m.Legacy {
		return nil, errors.New("legacy models are not scored here")
	}
	x, n, err := classify.Featurize(m.FeatureSet, features.Config{}, test)
	if err != nil {
		return nil, err
	}
	names, err := features.Names(m.FeatureSet)
	if err != nil {
		return nil, err
	}
	idx := make([]int, len(m.Features))
	for i, f := range m.Features {
		idx[i] = -1
		for k, nm := range names {
			if nm == f {
				idx[i] = k
			}
		}
		if idx[i] < 0 {
			return nil, fmt.Errorf("feature %q unknown to set %s", f, m.FeatureSet)
		}
	}
	classes := append([]string(nil), m.Classes...)
	index := map[string]int32{}
	for i, c := range classes {
		index[c] = int32(i)
	}
	truth := make([]int32, len(test))
	pred := make([]int32, len(test))
	row := make([]float32, len(idx))
	for i := range test {
		c, ok := index[test[i].Label]
		if !ok {
			c = int32(len(classes))
			classes = append(classes, test[i].Label)
			index[test[i].Label] = c
		}
		truth[i] = c
		for k, j := range idx {
			row[k] = x[i*n+j]
		}
		p, _ := m.Forest.Predict(row)
		pred[i] = int32(p)
	}
	r := forest.Evaluate(classes, truth, pred)
	return &Score{Accuracy: r.Accuracy, MacroF1: r.MacroF1}, nil
}

// ErrNothingToActivate is returned when no finished candidate waits.
var ErrNothingToActivate = errors.New("no new model waits for activation")

// Activate writes the candidate to ModelDir as model-v<N>.json and loads
// it through the holder (the model in use becomes the rollback target).
func (s *Service) Activate() (ModelJSON, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.job
	if j == nil || j.State != JobDone || j.candidate == nil {
		return ModelJSON{}, ErrNothingToActivate
	}
	if err := os.MkdirAll(s.cfg.ModelDir, 0o755); err != nil {
		return ModelJSON{}, fmt.Errorf("labels: %w", err)
	}
	v := nextVersion(s.cfg.ModelDir)
	path := filepath.Join(s.cfg.ModelDir, fmt.Sprintf("model-v%d.json", v))
	if err := writeModel(path, j.candidate); err != nil {
		return ModelJSON{}, err
	}
	if err := s.cfg.Holder.LoadFile(path); err != nil {
		return ModelJSON{}, err
	}
	j.State, j.Version, j.candidate = JobActivated, v, nil
	if err := s.pin(); err != nil {
		s.cfg.Log.Warn("labels: cannot record the active model; a restart will load the default model", "error", err)
	}
	s.cfg.Log.Info("labels: activated a retrained model", "path", path, "user", j.User)
	return *describe(s.cfg.Holder.Current()), nil
}

func nextVersion(dir string) int {
	ents, _ := os.ReadDir(dir)
	v := 0
	for _, e := range ents {
		if m := versionRE.FindStringSubmatch(e.Name()); m != nil {
			if n, _ := strconv.Atoi(m[1]); n > v {
				v = n
			}
		}
	}
	return v + 1
}

func writeModel(path string, m *forest.Model) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".model-*.tmp")
	if err != nil {
		return fmt.Errorf("labels: %w", err)
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriter(tmp)
	serr := m.Save(w)
	ferr := w.Flush()
	yerr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(serr, ferr, yerr, cerr); err != nil {
		return fmt.Errorf("labels: save model: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("labels: %w", err)
	}
	return nil
}

// Rollback puts the previous model back.
func (s *Service) Rollback() (ModelJSON, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.cfg.Holder.Rollback(); err != nil {
		return ModelJSON{}, err
	}
	if err := s.pin(); err != nil {
		s.cfg.Log.Warn("labels: cannot record the active model", "error", err)
	}
	return *describe(s.cfg.Holder.Current()), nil
}

type spanRequest struct {
	Device string    `json:"device"`
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	Label  string    `json:"label"`
}

// Handler serves, under /ui/api/ (the dashboard checks sign-in and CSRF
// before it; GET is a read):
//
//	GET    labels?device=ID     the spans
//	POST   labels               {"device","from","to","label"}
//	DELETE labels/{id}
//	GET    retrain              models in use and the last job
//	POST   retrain              start a job (409 while one runs)
//	POST   retrain/activate     activate the finished candidate
//	POST   retrain/rollback     put the previous model back
//
// ctx bounds the background jobs (the server's lifetime).
func (s *Service) Handler(ctx context.Context) http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("GET /ui/api/labels", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.cfg.Spans.List(r.URL.Query().Get("device")))
	})
	m.HandleFunc("POST /ui/api/labels", func(w http.ResponseWriter, r *http.Request) {
		var req spanRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 16<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, "body must be {\"device\", \"from\", \"to\", \"label\"}: "+err.Error())
			return
		}
		sp, err := s.cfg.Spans.Add(Span{Device: req.Device, From: req.From, To: req.To, Label: req.Label, User: s.cfg.User(r.Context())})
		if errors.Is(err, ErrInvalid) {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusCreated, sp)
	})
	m.HandleFunc("DELETE /ui/api/labels/{id}", func(w http.ResponseWriter, r *http.Request) {
		err := s.cfg.Spans.Delete(r.PathValue("id"))
		if errors.Is(err, ErrNotFound) {
			writeError(w, http.StatusNotFound, err.Error())
			return
		}
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	m.HandleFunc("GET /ui/api/retrain", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Status())
	})
	m.HandleFunc("POST /ui/api/retrain", func(w http.ResponseWriter, r *http.Request) {
		j, err := s.Start(ctx, s.cfg.User(r.Context()))
		switch {
		case errors.Is(err, ErrBusy):
			writeError(w, http.StatusConflict, err.Error())
		case errors.Is(err, ErrNoLabels):
			writeError(w, http.StatusBadRequest, err.Error())
		case err != nil:
			writeError(w, http.StatusInternalServerError, err.Error())
		default:
			writeJSON(w, http.StatusAccepted, j)
		}
	})
	m.HandleFunc("POST /ui/api/retrain/activate", func(w http.ResponseWriter, r *http.Request) {
		mj, err := s.Activate()
		if errors.Is(err, ErrNothingToActivate) {
			writeError(w, http.StatusConflict, err.Error())
			return
		}
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, mj)
	})
	m.HandleFunc("POST /ui/api/retrain/rollback", func(w http.ResponseWriter, r *http.Request) {
		mj, err := s.Rollback()
		if errors.Is(err, classify.ErrNoModel) {
			writeError(w, http.StatusConflict, "no previous model to roll back to")
			return
		}
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, mj)
	})
	return m
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// ActiveFile, inside ModelDir, names the retrained model in use (one line:
// its file name), so a restarted server can load it again (see
// ActiveModel). It is removed when the model in use is not a retrained one.
const ActiveFile = "ACTIVE"

// pin records the model in use in ModelDir/ACTIVE.
func (s *Service) pin() error {
	p := filepath.Join(s.cfg.ModelDir, ActiveFile)
	cur := s.cfg.Holder.Current()
	if cur == nil || !versionRE.MatchString(cur.Source) || filepath.Dir(cur.Source) != filepath.Clean(s.cfg.ModelDir) {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(filepath.Base(cur.Source)+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// ActiveModel returns the retrained model a server should load at start
// instead of its default model: the file ModelDir/ACTIVE names, if both
// exist.
func ActiveModel(modelDir string) (string, bool) {
	b, err := os.ReadFile(filepath.Join(modelDir, ActiveFile))
	if err != nil {
		return "", false
	}
	name := strings.TrimSpace(string(b))
	if !versionRE.MatchString(name) || filepath.Base(name) != name {
		return "", false
	}
	p := filepath.Join(modelDir, name)
	if _, err := os.Stat(p); err != nil {
		return "", false
	}
	return p, true
}
