// Package classify applies appliance models to readings: it turns readings
// CSV files into training sets (features computed per device stream, in time
// order), cross-validates without leaking the future (time-blocked folds),
// holds the model a server uses with atomic hot reload, and serves the
// predict endpoints.
package classify

import (
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"

	"loadwatch/internal/features"
	"loadwatch/internal/forest"
	"loadwatch/internal/readingscsv"
)

// ErrNoLabel is returned when training or evaluation data has an
// unlabelled row.
var ErrNoLabel = errors.New("row has no label")

// ReadFiles reads the rows of every readings CSV file in paths, in order.
func ReadFiles(paths ...string) ([]readingscsv.Row, error) {
	var all []readingscsv.Row
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		rows, err := readingscsv.ReadAll(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		all = append(all, rows...)
	}
	return all, nil
}

// Featurize computes the feature vectors of rows with the named set: one
// stream per device, fed in the order given (which must be time order per
// device, as in a readings CSV). It returns the row-major matrix and the
// number of features per row.
func Featurize(set string, cfg features.Config, rows []readingscsv.Row) ([]float32, int, error) {
	s, err := features.NewStreams(set, cfg)
	if err != nil {
		return nil, 0, err
	}
	nf := s.NumFeatures()
	x := make([]float32, len(rows)*nf)
	for i := range rows {
		s.Push(rows[i].Device, rows[i].Reading, x[i*nf:(i+1)*nf])
	}
	return x, nf, nil
}

// Labels returns the sorted distinct labels of rows, and an error naming
// the first unlabelled row.
func Labels(rows []readingscsv.Row) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, r := range rows {
		if r.Label == "" {
			return nil, fmt.Errorf("line %d (device %s): %w", r.Line, r.Device, ErrNoLabel)
		}
		if !seen[r.Label] {
			seen[r.Label] = true
			out = append(out, r.Label)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Encode maps each row's label to its index in classes; a label missing
// from classes is appended to the returned class list (a model never
// predicts it, but an evaluation must count it).
func Encode(rows []readingscsv.Row, classes []string) ([]int32, []string) {
	idx := make(map[string]int32, len(classes))
	classes = slices.Clone(classes)
	for i, c := range classes {
		idx[c] = int32(i)
	}
	y := make([]int32, len(rows))
	for i, r := range rows {
		k, ok := idx[r.Label]
		if !ok {
			k = int32(len(classes))
			idx[r.Label] = k
			classes = append(classes, r.Label)
		}
		y[i] = k
	}
	return y, classes
}

// BuildDataset computes the features of labelled rows and returns the
// training set, classes sorted by name.
func BuildDataset(set string, cfg features.Config, rows []readingscsv.Row) (forest.Dataset, error) {
	classes, err := Labels(rows)
	if err != nil {
		return forest.Dataset{}, err
	}
	x, nf, err := Featurize(set, cfg, rows)
	if err != nil {
		return forest.Dataset{}, err
	}
	names, _ := features.Names(set)
	y, _ := Encode(rows, classes)
	return forest.Dataset{X: x, NFeatures: nf, Y: y, Classes: classes, Features: names}, nil
}

// CheckModel verifies that m's feature list is what this build computes
// for its feature set, so that a model is never fed features in another
// order or meaning than it was trained on.
func CheckModel(m *forest.Model) error {
	names, err := features.Names(m.FeatureSet)
	if err != nil {
		return fmt.Errorf("model feature set: %w", err)
	}
	if !slices.Equal(names, m.Features) {
		return fmt.Errorf("model features %v do not match feature set %q of this build %v", m.Features, m.FeatureSet, names)
	}
	if m.Forest == nil {
		return errors.New("model has no forest")
	}
	if m.Forest.NumFeatures() != len(names) {
		return fmt.Errorf("model forest takes %d features, feature set %q has %d", m.Forest.NumFeatures(), m.FeatureSet, len(names))
	}
	if m.Forest.NumClasses() != len(m.Classes) {
		return fmt.Errorf("model forest has %d classes, names %d", m.Forest.NumClasses(), len(m.Classes))
	}
	return nil
}

// Mask sets the named features of d to NaN (not measured) in every row, for
// ablation studies. A name ending in '*' is a prefix.
func Mask(d *forest.Dataset, names []string) error {
	for _, name := range names {
		hit := false
		for j, f := range d.Features {
			if f == name || (strings.HasSuffix(name, "*") && strings.HasPrefix(f, strings.TrimSuffix(name, "*"))) {
				hit = true
				for i := 0; i < d.Rows(); i++ {
					d.X[i*d.NFeatures+j] = float32(math.NaN())
				}
			}
		}
		if !hit {
			return fmt.Errorf("mask: no feature %q in %v", name, d.Features)
		}
	}
	return nil
}
