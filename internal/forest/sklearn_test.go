package forest

import (
	"bufio"
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// debianPython is Debian's interpreter, which has python3-sklearn; another
// python3 may come first on PATH.
const debianPython = "/usr/bin/python3"

func needSklearn(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(debianPython); err != nil {
		t.Skipf("skipping: %s not found (install Debian's python3-sklearn)", debianPython)
	}
	out, err := exec.Command(debianPython, "-c", "import sklearn, joblib, numpy").CombinedOutput()
	if err != nil {
		t.Skipf("skipping: %s cannot import sklearn (apt-get install python3-sklearn): %v: %s", debianPython, err, out)
	}
}

// TestSklearnImport trains scikit-learn forests on the shipped OMPM data,
// exports them with tools/sklearn/export_sklearn.py and checks that the
// imported model predicts exactly scikit-learn's class on every row, and
// its probabilities to float32 precision.
func TestSklearnImport(t *testing.T) {
	needSklearn(t)
	cases := []struct {
		name     string
		cols     []string
		params   map[string]any
		features string // --features for the exporter
		legacy   bool
	}{
		{"defaults 5 columns", []string{"voltage", "current", "power", "frequency", "pf"},
			map[string]any{"n_estimators": 100, "random_state": 3}, "voltage,current,power,frequency,pf", false},
		// Mixed leaves, balanced weights and a depth limit; the two columns
		// are named power,energy so the export is marked legacy.
		{"shallow balanced legacy", []string{"power", "current"},
			map[string]any{"n_estimators": 25, "random_state": 5, "min_samples_leaf": 4, "max_depth": 8, "class_weight": "balanced"},
			"power,energy", true},
	}
	data := filepath.Join("..", "..", "datasets", "ompm.csv")
	tools := filepath.Join("..", "..", "tools", "sklearn")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			params, _ := json.Marshal(c.params)
			run(t, debianPython, filepath.Join(tools, "sklearn_fixture.py"), data, strings.Join(c.cols, ","), dir, string(params))
			out := filepath.Join(dir, "model.json")
			run(t, debianPython, filepath.Join(tools, "export_sklearn.py"), filepath.Join(dir, "model.joblib"), "--out", out, "--features", c.features)

			fh, err := os.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			m, err := Load(fh)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if m.Kind != KindSklearn || m.Legacy != c.legacy || strings.Join(m.Features, ",") != c.features {
				t.Errorf("kind %q legacy %v features %v", m.Kind, m.Legacy, m.Features)
			}
			d := loadCSV(t, data, c.cols)
			wantClass, wantProb := readPredictions(t, filepath.Join(dir, "predictions.txt"), len(m.Classes))
			if len(wantClass) != d.Rows() {
				t.Fatalf("%d predictions for %d rows", len(wantClass), d.Rows())
			}
			probs := make([]float32, len(m.Classes))
			batch := make([]int32, d.Rows())
			m.Forest.PredictBatch(d.X, batch, nil)
			bad := 0
			for r := range d.Rows() {
				x := d.X[r*d.NFeatures : (r+1)*d.NFeatures]
				cls, _ := m.Forest.Predict(x)
				if m.Classes[cls] != wantClass[r] || m.Classes[batch[r]] != wantClass[r] {
					if bad++; bad <= 5 {
						t.Errorf("row %d: loadwatch %q (batch %q), sklearn %q", r, m.Classes[cls], m.Classes[batch[r]], wantClass[r])
					}
				}
				m.Forest.PredictProba(x, probs)
				for k, p := range probs {
					if want := float32(wantProb[r][k]); p != want {
						if bad++; bad <= 5 {
							t.Errorf("row %d class %d: probability %v, sklearn %v", r, k, p, want)
						}
					}
				}
			}
			if bad > 0 {
				t.Fatalf("%d mismatches over %d rows", bad, d.Rows())
			}
		})
	}
}

// TestSklearnExportRefuses checks that the exporter fails clearly on a file
// that is not a forest.
func TestSklearnExportRefuses(t *testing.T) {
	needSklearn(t)
	dir := t.TempDir()
	bogus := filepath.Join(dir, "bogus.pkl")
	if err := os.WriteFile(bogus, []byte("not a pickle"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(debianPython, filepath.Join("..", "..", "tools", "sklearn", "export_sklearn.py"), bogus, "--out", filepath.Join(dir, "m.json"))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(string(out), "cannot load") {
		t.Fatalf("exporter on garbage: err %v, output %s", err, out)
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func readPredictions(t *testing.T, path string, nc int) ([]string, [][]float64) {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var classes []string
	var probs [][]float64
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != nc+1 {
			t.Fatalf("prediction line %q", sc.Text())
		}
		classes = append(classes, f[0])
		p := make([]float64, nc)
		for k := range p {
			v, err := strconv.ParseFloat(f[k+1], 64)
			if err != nil || math.IsNaN(v) {
				t.Fatalf("prediction line %q: %v", sc.Text(), err)
			}
			p[k] = v
		}
		probs = append(probs, p)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return classes, probs
}
