package forest

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	d := synthetic(500, 2, 4)
	cfg := Config{Trees: 15, MinSamplesLeaf: 2, Bootstrap: true, ClassWeight: "balanced", Seed: 11}
	f := train(t, d, cfg)
	b := modelBytes(t, d, f, cfg)
	m, err := Load(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if m.FormatVersion != FormatVersion || m.Kind != KindLoadwatch || m.FeatureSet != "test-v1" ||
		!reflect.DeepEqual(m.Features, d.Features) || !reflect.DeepEqual(m.Classes, d.Classes) ||
		m.DataHash != HashDataset(d) || m.Config.Seed != 11 || m.Config.ClassWeight != "balanced" || m.TrainedAt.Year() != 2026 {
		t.Errorf("loaded header %+v", m)
	}
	if !sameNodes(m.Forest.nodes, f.nodes) || !reflect.DeepEqual(m.Forest.values, f.values) ||
		!reflect.DeepEqual(m.Forest.roots, f.roots) || !reflect.DeepEqual(m.Forest.Importances(), f.Importances()) {
		t.Fatal("loaded forest differs from the saved one")
	}
	// Saving the loaded model gives the same bytes.
	m.Config = cfg
	var again bytes.Buffer
	if err := m.Save(&again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), b) {
		t.Fatal("save(load(file)) differs from file")
	}
	// The report travels as raw JSON.
	m.Report = json.RawMessage(`{"rows":3}`)
	again.Reset()
	if err := m.Save(&again); err != nil {
		t.Fatal(err)
	}
	m2, err := Load(&again)
	if err != nil || string(m2.Report) != `{"rows":3}` {
		t.Fatalf("report %s, %v", m2.Report, err)
	}
}

// smallModel is a hand-written valid model file: one tree, feature 0 split
// at 0.5 (NaN left), left leaf class a, right leaf 25/75.
const smallModel = `{"format":"loadwatch-model","format_version":1,"kind":"loadwatch","legacy":false,"feature_set":"t",` +
	`"features":["p","q"],"classes":["a","b"],"data_hash":"","trained_at":"2026-01-01T00:00:00Z",` +
	`"config":{"trees":1},"forest":{"n_features":2,"n_classes":2,"trees":[{"feature":[0,-1,-1],"threshold":[0.5,0,0],` +
	`"left":[1,-1,-1],"right":[2,-1,-1],"missing_left":[1,0,0],"value":[1,0,0.25,0.75]}]}}`

func TestLoadSmall(t *testing.T) {
	m, err := Load(strings.NewReader(smallModel))
	if err != nil {
		t.Fatal(err)
	}
	f := m.Forest
	for _, c := range []struct {
		x    []float32
		want int
		p    float32
	}{{[]float32{0.5, 0}, 0, 1}, {[]float32{0.50001, 0}, 1, 0.75}, {[]float32{nan, 9}, 0, 1}} {
		if got, p := f.Predict(c.x); got != c.want || p != c.p {
			t.Errorf("Predict(%v) = %d %v, want %d %v", c.x, got, p, c.want, c.p)
		}
	}
}

// TestLoadSklearnOrder loads a tree whose nodes are not in pre-order (right
// subtree numbered first) and checks it is renumbered correctly.
// TestLoadTimeOffset: an offset RFC 3339 parsing accepts and writing
// refuses (+24:00) is moved to UTC, so the model saves again.
func TestLoadTimeOffset(t *testing.T) {
	m, err := Load(strings.NewReader(strings.Replace(smallModel, `00:00:00Z`, `00:00:00+24:00`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC); !m.TrainedAt.Equal(want) || m.TrainedAt.Location() != time.UTC {
		t.Fatalf("trained_at %v, want %v", m.TrainedAt, want)
	}
	if err := m.Save(&bytes.Buffer{}); err != nil {
		t.Fatalf("does not save: %v", err)
	}
}

func TestLoadNotPreorder(t *testing.T) {
	s := strings.Replace(smallModel, `"feature":[0,-1,-1],"threshold":[0.5,0,0],"left":[1,-1,-1],"right":[2,-1,-1],"missing_left":[1,0,0],"value":[1,0,0.25,0.75]`,
		`"feature":[0,-1,-1],"threshold":[0.5,0,0],"left":[2,-1,-1],"right":[1,-1,-1],"missing_left":[1,0,0],"value":[0.25,0.75,1,0]`, 1)
	m, err := Load(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Forest.Predict([]float32{0, 0}); got != 0 {
		t.Errorf("left got %d", got)
	}
	if got, p := m.Forest.Predict([]float32{1, 0}); got != 1 || p != 0.75 {
		t.Errorf("right got %d %v", got, p)
	}
}

func TestLoadRejects(t *testing.T) {
	rep := func(old, new string) string {
		if !strings.Contains(smallModel, old) {
			t.Fatalf("test bug: %q not in model", old)
		}
		return strings.Replace(smallModel, old, new, 1)
	}
	cases := []struct {
		name string
		file string
		want error
	}{
		{"empty", "", ErrCorrupt},
		{"truncated", smallModel[:len(smallModel)/2], ErrCorrupt},
		{"not json", "PK\x03\x04", ErrCorrupt},
		{"other json", `{"hello":1}`, ErrFormat},
		{"wrong version", rep(`"format_version":1`, `"format_version":2`), ErrVersion},
		{"unknown kind", rep(`"kind":"loadwatch"`, `"kind":"xgboost"`), ErrCorrupt},
		{"feature count", rep(`"features":["p","q"]`, `"features":["p"]`), ErrCorrupt},
		{"class count", rep(`"classes":["a","b"]`, `"classes":["a","b","c"]`), ErrCorrupt},
		{"duplicate class", rep(`"classes":["a","b"]`, `"classes":["a","a"]`), ErrCorrupt},
		{"no forest", rep(`"forest":{`, `"forest_":{`), ErrCorrupt},
		{"no trees", rep(`"trees":[{`, `"trees":[],"x":[{`), ErrCorrupt},
		{"child out of range", rep(`"right":[2,-1,-1]`, `"right":[3,-1,-1]`), ErrCorrupt},
		{"negative child", rep(`"right":[2,-1,-1]`, `"right":[-5,-1,-1]`), ErrCorrupt},
		{"cycle to root", rep(`"right":[2,-1,-1]`, `"right":[0,-1,-1]`), ErrCorrupt},
		{"same child twice", rep(`"right":[2,-1,-1]`, `"right":[1,-1,-1]`), ErrCorrupt},
		{"leaf with child", rep(`"left":[1,-1,-1]`, `"left":[1,2,-1]`), ErrCorrupt},
		{"feature out of range", rep(`"feature":[0,-1,-1]`, `"feature":[2,-1,-1]`), ErrCorrupt},
		{"bad feature code", rep(`"feature":[0,-1,-1]`, `"feature":[-3,-1,-1]`), ErrCorrupt},
		{"short threshold", rep(`"threshold":[0.5,0,0]`, `"threshold":[0.5,0]`), ErrCorrupt},
		{"missing_left 2", rep(`"missing_left":[1,0,0]`, `"missing_left":[2,0,0]`), ErrCorrupt},
		{"few values", rep(`"value":[1,0,0.25,0.75]`, `"value":[1,0,0.25]`), ErrCorrupt},
		{"many values", rep(`"value":[1,0,0.25,0.75]`, `"value":[1,0,0.25,0.75,0,1]`), ErrCorrupt},
		{"probabilities sum", rep(`"value":[1,0,0.25,0.75]`, `"value":[1,0,0.25,0.5]`), ErrCorrupt},
		{"negative probability", rep(`"value":[1,0,0.25,0.75]`, `"value":[1,0,1.25,-0.25]`), ErrCorrupt},
		{"zero classes", rep(`"n_classes":2`, `"n_classes":0`), ErrCorrupt},
		{"importances length", rep(`"n_classes":2,`, `"n_classes":2,"importances":[1],`), ErrCorrupt},
		{"threshold type", rep(`"threshold":[0.5,0,0]`, `"threshold":["x",0,0]`), ErrCorrupt},
		{"time past 9999 in UTC", rep(`2026-01-01T00:00:00Z`, `9999-12-31T23:30:00-01:00`), ErrCorrupt},
		{"time before year 0 in UTC", rep(`2026-01-01T00:00:00Z`, `0000-01-01T00:30:00+01:00`), ErrCorrupt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Load(strings.NewReader(c.file))
			if err == nil {
				t.Fatalf("Load accepted it: %+v", m)
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
		})
	}
}

func TestSaveRefuses(t *testing.T) {
	f := train(t, tiny([]string{"a", "b"}, []float32{1, 0}, []float32{2, 1}), Config{Trees: 1})
	for _, m := range []*Model{
		{Kind: KindLoadwatch, Features: []string{"x"}, Classes: []string{"a", "b"}},
		{Kind: "other", Features: []string{"x"}, Classes: []string{"a", "b"}, Forest: f},
		{Kind: KindLoadwatch, Features: []string{"x", "y"}, Classes: []string{"a", "b"}, Forest: f},
		{Kind: KindLoadwatch, Features: []string{"x"}, Classes: []string{"a"}, Forest: f},
	} {
		if err := m.Save(&bytes.Buffer{}); err == nil {
			t.Errorf("saved %+v", m)
		}
	}
}

func TestHashDataset(t *testing.T) {
	d := synthetic(50, 1, 0)
	h := HashDataset(d)
	if !strings.HasPrefix(h, "sha256:") || len(h) != 7+64 {
		t.Fatalf("hash %q", h)
	}
	d2 := synthetic(50, 1, 0)
	d2.X[7] = math.Nextafter32(d2.X[7], 1e9)
	d3 := synthetic(50, 1, 0)
	d3.Classes = append([]string(nil), d3.Classes...)
	d3.Classes[0] = "none"
	if HashDataset(synthetic(50, 1, 0)) != h || HashDataset(d2) == h || HashDataset(d3) == h {
		t.Error("hash is not a function of the content")
	}
}

// FuzzLoad feeds the loader mangled model files. Whatever it accepts must
// predict without panicking on any input and survive a save/load round trip.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(smallModel))
	f.Add([]byte(strings.Replace(smallModel, `"right":[2,-1,-1]`, `"right":[0,-1,-1]`, 1)))
	f.Add([]byte(strings.Replace(smallModel, `"value":[1,0,0.25,0.75]`, `"value":[1,0,0.25]`, 1)))
	f.Add([]byte(`{"format":"loadwatch-model","format_version":1}`))
	// Times RFC 3339 parsing accepts but writing refuses.
	f.Add([]byte(strings.Replace(smallModel, `00:00:00Z`, `00:00:00+24:00`, 1)))
	f.Add([]byte(strings.Replace(smallModel, `2026-01-01T00:00:00Z`, `0000-01-01T00:00:00+01:00`, 1)))
	var buf bytes.Buffer
	d := synthetic(60, 1, 5)
	tr, _ := Train(t0(), d, Config{Trees: 2, MaxDepth: 3, Bootstrap: true})
	(&Model{Kind: KindLoadwatch, Features: d.Features, Classes: d.Classes, Forest: tr}).Save(&buf)
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Load(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrFormat) && !errors.Is(err, ErrVersion) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		nf := m.Forest.NumFeatures()
		x := make([]float32, nf)
		probs := make([]float32, m.Forest.NumClasses())
		for _, v := range []float32{0, nan, float32(math.Inf(1)), -1e30} {
			for i := range x {
				x[i] = v
			}
			c, _ := m.Forest.Predict(x)
			if c < 0 || c >= m.Forest.NumClasses() {
				t.Fatalf("class %d", c)
			}
			m.Forest.PredictProba(x, probs)
		}
		var out bytes.Buffer
		if err := m.Save(&out); err != nil {
			t.Fatalf("accepted model does not save: %v", err)
		}
		if _, err := Load(&out); err != nil {
			t.Fatalf("saved model does not load: %v", err)
		}
	})
}

// sameNodes compares node arrays bit for bit (leaf thresholds are NaN).
func sameNodes(a, b []node) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].feat != b[i].feat || math.Float32bits(a[i].thr) != math.Float32bits(b[i].thr) ||
			a[i].right != b[i].right || a[i].leaf != b[i].leaf {
			return false
		}
	}
	return true
}
