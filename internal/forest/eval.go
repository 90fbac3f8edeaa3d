package forest

import "fmt"

// ClassScore holds one class's scores.
type ClassScore struct {
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	F1        float64 `json:"f1"`
	Support   int     `json:"support"` // rows whose true class it is
}

// Confusion is a confusion matrix: Matrix[t][p] counts rows of true class
// Classes[t] predicted as Classes[p].
type Confusion struct {
	Classes []string `json:"classes"`
	Matrix  [][]int  `json:"matrix"`
}

// Report is the outcome of an evaluation.
type Report struct {
	Rows      int                   `json:"rows"`
	Accuracy  float64               `json:"accuracy"`
	MacroF1   float64               `json:"macro_f1"`
	PerClass  map[string]ClassScore `json:"per_class"`
	Confusion Confusion             `json:"confusion"`
}

// Evaluate scores predictions against the truth. Precision (recall) is 0
// for a class never predicted (never true). As in scikit-learn's
// f1_score(average="macro"), the macro F1 averages over the classes that
// occur in truth or in pred; classes that occur in neither are listed with
// zero scores but do not lower it. Class indices outside classes are an
// error for the caller; Evaluate panics on them like an index out of range.
func Evaluate(classes []string, truth, pred []int32) Report {
	if len(truth) != len(pred) {
		panic(fmt.Sprintf("forest.Evaluate: %d truths for %d predictions", len(truth), len(pred)))
	}
	k := len(classes)
	m := make([][]int, k)
	for i := range m {
		m[i] = make([]int, k)
	}
	correct := 0
	for i, t := range truth {
		m[t][pred[i]]++
		if t == pred[i] {
			correct++
		}
	}
	r := Report{
		Rows:      len(truth),
		PerClass:  make(map[string]ClassScore, k),
		Confusion: Confusion{Classes: append([]string(nil), classes...), Matrix: m},
	}
	if len(truth) > 0 {
		r.Accuracy = float64(correct) / float64(len(truth))
	}
	present := 0
	f1sum := 0.0
	for c := range k {
		tp := m[c][c]
		support, predicted := 0, 0
		for j := range k {
			support += m[c][j]
			predicted += m[j][c]
		}
		var s ClassScore
		s.Support = support
		if predicted > 0 {
			s.Precision = float64(tp) / float64(predicted)
		}
		if support > 0 {
			s.Recall = float64(tp) / float64(support)
		}
		if s.Precision+s.Recall > 0 {
			s.F1 = 2 * s.Precision * s.Recall / (s.Precision + s.Recall)
		}
		if support > 0 || predicted > 0 {
			present++
			f1sum += s.F1
		}
		r.PerClass[classes[c]] = s
	}
	if present > 0 {
		r.MacroF1 = f1sum / float64(present)
	}
	return r
}
