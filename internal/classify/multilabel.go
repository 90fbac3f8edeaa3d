package classify

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"loadwatch/internal/forest"
)

// Nothing is the label of a row in which no appliance is on.
const Nothing = "nothing"

// Appliances returns the sorted appliance names that the '+'-joined labels
// in classes are made of ("nothing" is none).
func Appliances(classes []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range classes {
		for _, a := range strings.Split(c, "+") {
			if a != Nothing && a != "" && !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	slices.Sort(out)
	return out
}

// MultiLabel is one binary forest per appliance ("is it on?"). Unlike a
// forest over combination labels it can name a combination it never saw
// in training, as long as it saw each appliance.
type MultiLabel struct {
	Appliances []string
	Forests    []*forest.Forest
}

// TrainMultiLabel trains one on/off forest per appliance of d's classes.
func TrainMultiLabel(ctx context.Context, d forest.Dataset, cfg forest.Config) (*MultiLabel, error) {
	apps := Appliances(d.Classes)
	on := make([][]bool, len(d.Classes)) // class -> appliance on
	for i, c := range d.Classes {
		on[i] = make([]bool, len(apps))
		for _, a := range strings.Split(c, "+") {
			if k, ok := slices.BinarySearch(apps, a); ok {
				on[i][k] = true
			}
		}
	}
	m := &MultiLabel{Appliances: apps}
	for k, a := range apps {
		bin := d
		bin.Classes = []string{"off", "on"}
		bin.Y = make([]int32, len(d.Y))
		for i, y := range d.Y {
			if on[y][k] {
				bin.Y[i] = 1
			}
		}
		f, err := forest.Train(ctx, bin, cfg)
		if err != nil {
			return nil, fmt.Errorf("multi-label %s: %w", a, err)
		}
		m.Forests = append(m.Forests, f)
	}
	return m, nil
}

// Predict returns the '+'-joined appliances whose forest says "on" (or
// "nothing").
func (m *MultiLabel) Predict(x []float32) string {
	var on []string
	for k, f := range m.Forests {
		if f.NumClasses() == 1 {
			continue
		}
		if c, _ := f.Predict(x); c == 1 {
			on = append(on, m.Appliances[k])
		}
	}
	if len(on) == 0 {
		return Nothing
	}
	return strings.Join(on, "+")
}

// CrossValidateMulti is CrossValidate for one forest per appliance. The
// classes of the pooled report are d's classes followed by any
// combination the forests predicted that d does not hold.
func CrossValidateMulti(ctx context.Context, d forest.Dataset, folds *Folds, cfg forest.Config, progress func(fold int, s FoldScore)) (*CVResult, error) {
	n := d.Rows()
	if len(folds.Test) != n {
		return nil, fmt.Errorf("cv: %d fold assignments for %d rows", len(folds.Test), n)
	}
	nf := d.NFeatures
	classes := slices.Clone(d.Classes)
	index := map[string]int32{}
	for i, c := range classes {
		index[c] = int32(i)
	}
	pred := make([]int32, n)
	res := &CVResult{Scheme: folds.Scheme + " multi-label", K: folds.K, Purge: folds.Purge.String()}
	type fold struct {
		truth, pred []int32
		train       int
	}
	var fs []fold
	for k := 0; k < folds.K; k++ {
		tr := forest.Dataset{NFeatures: nf, Classes: d.Classes, Features: d.Features}
		var testIdx []int
		for i := 0; i < n; i++ {
			switch {
			case int(folds.Test[i]) == k:
				testIdx = append(testIdx, i)
			case folds.Train(i, k):
				tr.X = append(tr.X, d.X[i*nf:(i+1)*nf]...)
				tr.Y = append(tr.Y, d.Y[i])
			}
		}
		if len(testIdx) == 0 {
			continue
		}
		ml, err := TrainMultiLabel(ctx, tr, cfg)
		if err != nil {
			return nil, fmt.Errorf("cv fold %d: %w", k, err)
		}
		f := fold{train: len(tr.Y)}
		for _, i := range testIdx {
			label := ml.Predict(d.X[i*nf : (i+1)*nf])
			c, ok := index[label]
			if !ok {
				c = int32(len(classes))
				index[label] = c
				classes = append(classes, label)
			}
			pred[i] = c
			f.truth = append(f.truth, d.Y[i])
			f.pred = append(f.pred, c)
		}
		fs = append(fs, f)
		if progress != nil {
			rep := forest.Evaluate(classes, f.truth, f.pred)
			progress(k, FoldScore{Fold: k, TrainRows: f.train, TestRows: len(f.truth), Accuracy: rep.Accuracy, MacroF1: rep.MacroF1})
		}
	}
	for k, f := range fs {
		rep := forest.Evaluate(classes, f.truth, f.pred)
		res.Folds = append(res.Folds, FoldScore{Fold: k, TrainRows: f.train, TestRows: len(f.truth), Accuracy: rep.Accuracy, MacroF1: rep.MacroF1})
	}
	res.MeanAcc, res.StdAcc = meanStd(res.Folds, func(s FoldScore) float64 { return s.Accuracy })
	res.MeanMacroF1, res.StdMacroF1 = meanStd(res.Folds, func(s FoldScore) float64 { return s.MacroF1 })
	res.Pooled = forest.Evaluate(classes, d.Y, pred)
	res.Predicted = pred
	return res, nil
}
