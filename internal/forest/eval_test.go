package forest

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-12 }

func TestEvaluate(t *testing.T) {
	classes := []string{"a", "b", "c", "d"}
	//           a  a  a  b  b  c
	truth := []int32{0, 0, 0, 1, 1, 2}
	pred := []int32{0, 0, 1, 1, 2, 2}
	r := Evaluate(classes, truth, pred)
	// Worked by hand: a: P 2/2, R 2/3, F1 0.8; b: P 1/2, R 1/2, F1 0.5;
	// c: P 1/2, R 1/1, F1 2/3; d never occurs and is left out of the macro
	// average: (0.8 + 0.5 + 2/3) / 3.
	if r.Rows != 6 || !near(r.Accuracy, 4.0/6) || !near(r.MacroF1, (0.8+0.5+2.0/3)/3) {
		t.Errorf("rows %d accuracy %v macro F1 %v", r.Rows, r.Accuracy, r.MacroF1)
	}
	want := map[string]ClassScore{
		"a": {Precision: 1, Recall: 2.0 / 3, F1: 0.8, Support: 3},
		"b": {Precision: 0.5, Recall: 0.5, F1: 0.5, Support: 2},
		"c": {Precision: 0.5, Recall: 1, F1: 2.0 / 3, Support: 1},
		"d": {},
	}
	for k, w := range want {
		g := r.PerClass[k]
		if !near(g.Precision, w.Precision) || !near(g.Recall, w.Recall) || !near(g.F1, w.F1) || g.Support != w.Support {
			t.Errorf("class %s: %+v, want %+v", k, g, w)
		}
	}
	wantM := [][]int{{2, 1, 0, 0}, {0, 1, 1, 0}, {0, 0, 1, 0}, {0, 0, 0, 0}}
	if !reflect.DeepEqual(r.Confusion.Matrix, wantM) || !reflect.DeepEqual(r.Confusion.Classes, classes) {
		t.Errorf("confusion %+v", r.Confusion)
	}

	// A class predicted but never true counts in the macro average with F1 0.
	r = Evaluate([]string{"a", "e"}, []int32{0, 0}, []int32{0, 1})
	if !near(r.MacroF1, (2.0/3+0)/2) || !near(r.PerClass["a"].F1, 2.0/3) || r.PerClass["e"] != (ClassScore{}) {
		t.Errorf("predicted-only class: %+v", r)
	}

	r = Evaluate([]string{"a"}, nil, nil)
	if r.Rows != 0 || r.Accuracy != 0 || r.MacroF1 != 0 {
		t.Errorf("empty: %+v", r)
	}
}

func TestReportJSON(t *testing.T) {
	b, err := json.Marshal(Evaluate([]string{"x", "y"}, []int32{0, 1, 1}, []int32{0, 1, 0}))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"rows", "accuracy", "macro_f1", "per_class", "confusion"} {
		if _, ok := got[k]; !ok {
			t.Errorf("key %q missing in %s", k, b)
		}
	}
	y := got["per_class"].(map[string]any)["y"].(map[string]any)
	for _, k := range []string{"precision", "recall", "f1", "support"} {
		if _, ok := y[k]; !ok {
			t.Errorf("per_class key %q missing in %s", k, b)
		}
	}
	conf := got["confusion"].(map[string]any)
	if _, ok := conf["classes"]; !ok {
		t.Errorf("confusion.classes missing in %s", b)
	}
	if m, ok := conf["matrix"].([]any); !ok || len(m) != 2 {
		t.Errorf("confusion.matrix in %s", b)
	}
}
