package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"loadwatch/internal/classify"
	"loadwatch/internal/features"
	"loadwatch/internal/forest"
	"loadwatch/internal/loadsim"
	"loadwatch/internal/readingscsv"
)

// DefaultModelSeed seeds the synthetic dataset and the forest of the
// default model, so every first start trains the same model.
const DefaultModelSeed = 1

// DefaultModelConfig is the forest of the default model: smaller than
// scikit-learn's 100 trees so that a first start on a Raspberry Pi takes
// seconds, leaves of 5 rows as `loadwatch model train` uses by default.
var DefaultModelConfig = forest.Config{Trees: 40, MinSamplesLeaf: 5, MinSamplesSplit: 2, Bootstrap: true, Seed: DefaultModelSeed}

// TrainDefaultModel trains the classifier used when no model file is
// configured: features lw1 over loadsim's synthetic labelled dataset (its
// seed appliances and their combinations, 2452 rows at 1 s).
func TrainDefaultModel(ctx context.Context) (*forest.Model, error) {
	rows, err := DefaultDataset(ctx)
	if err != nil {
		return nil, err
	}
	d, err := classify.BuildDataset(features.SetLW1, features.Config{}, rows)
	if err != nil {
		return nil, err
	}
	f, err := forest.Train(ctx, d, DefaultModelConfig)
	if err != nil {
		return nil, err
	}
	m := &forest.Model{
		FormatVersion: forest.FormatVersion,
		Kind:          forest.KindLoadwatch,
		FeatureSet:    features.SetLW1,
		Features:      d.Features,
		Classes:       d.Classes,
		DataHash:      forest.HashDataset(d),
		TrainedAt:     time.Now().UTC().Truncate(time.Second),
		Config:        DefaultModelConfig,
		Forest:        f,
	}
	if err := classify.CheckModel(m); err != nil {
		return nil, err
	}
	return m, nil
}

// DefaultDataset returns the labelled rows the default model is trained
// on (loadsim's synthetic dataset, seed DefaultModelSeed), as one device
// "loadsim". The dashboard's retraining adds them to the labelled spans
// (web.Parts.Bundled), so a retrained model keeps the seed classes.
func DefaultDataset(ctx context.Context) ([]readingscsv.Row, error) {
	var rows []readingscsv.Row
	err := loadsim.Dataset(loadsim.DatasetConfig{Seed: DefaultModelSeed}, func(r loadsim.Row) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		rows = append(rows, readingscsv.Row{Device: "loadsim", Reading: r.Reading, Label: r.Label, Line: len(rows) + 2})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rows, nil
}

// WriteModel writes m to path through a temporary file, fsync and rename,
// so that a reader (the model watcher) never sees half a model.
func WriteModel(path string, m *forest.Model) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".model-*.tmp")
	if err != nil {
		return fmt.Errorf("write model: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := m.Save(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("write model: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write model: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write model: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write model: %w", err)
	}
	return nil
}
