package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"loadwatch/internal/classify"
	"loadwatch/internal/features"
	"loadwatch/internal/forest"
	"loadwatch/internal/readingscsv"
)

// modelCmd groups the classifier tools.
type modelCmd struct {
	Train   modelTrainCmd   `cmd:"" help:"Train a Random Forest appliance model from labelled readings CSV files."`
	Eval    modelEvalCmd    `cmd:"" help:"Score a model on a labelled readings CSV file."`
	Predict modelPredictCmd `cmd:"" help:"Classify every row of a readings CSV file; writes the CSV back with predicted and confidence columns."`
	Report  modelReportCmd  `cmd:"" help:"Time-blocked cross-validation of the classifier on labelled readings CSV files (never a random row split)."`
}

// forestFlags are the training settings shared by train and report.
type forestFlags struct {
	Trees       int           `default:"100" help:"Number of trees."`
	Seed        uint64        `default:"1" help:"Random seed; the same seed and data give the same model."`
	MaxDepth    int           `default:"0" help:"Maximum tree depth (0 = unlimited)."`
	MinLeaf     int           `default:"5" help:"Minimum rows per leaf (5 regularises the per-reading forest; see docs/CLASSIFIER.md)."`
	MaxFeatures int           `default:"0" help:"Features tried per split (0 = sqrt of the feature count, -1 = all)."`
	ClassWeight string        `default:"" enum:",balanced" help:"Class weights: empty (equal) or balanced."`
	Features    string        `default:"lw1" enum:"lw1,legacy" help:"Feature set: lw1 (loadwatch's causal features) or legacy (raw power and energy, for the original /predict form)."`
	MaxGap      time.Duration `default:"30s" help:"A longer gap between two readings of a device restarts its feature windows."`
}

func (f forestFlags) config() forest.Config {
	c := forest.DefaultConfig()
	c.Trees, c.Seed, c.MaxDepth, c.MinSamplesLeaf, c.MaxFeatures, c.ClassWeight = f.Trees, f.Seed, f.MaxDepth, f.MinLeaf, f.MaxFeatures, f.ClassWeight
	return c
}

func (f forestFlags) featureConfig() features.Config {
	return features.Config{MaxGap: f.MaxGap}
}

type modelTrainCmd struct {
	Data []string `required:"" sep:"," help:"Labelled readings CSV file(s), comma separated."`
	Out  string   `required:"" help:"Model file to write (JSON)."`
	CV   int      `name:"cv" default:"0" help:"Before training, run this many time-blocked folds (scheme runs, purge 10s) and store the result in the model file (0 = skip)."`
	forestFlags
}

func (c *modelTrainCmd) Run(ctx context.Context) error {
	rows, err := classify.ReadFiles(c.Data...)
	if err != nil {
		return err
	}
	d, err := classify.BuildDataset(c.Features, c.featureConfig(), rows)
	if err != nil {
		return err
	}
	var report json.RawMessage
	if c.CV > 0 {
		folds, err := classify.MakeFolds(rows, c.CV, classify.SchemeRuns, 10*time.Second)
		if err != nil {
			return err
		}
		res, err := classify.CrossValidate(ctx, d, folds, c.config(), nil)
		if err != nil {
			return err
		}
		if report, err = json.Marshal(res); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "cross-validation (%d folds, runs): accuracy %.4f +- %.4f, macro-F1 %.4f +- %.4f\n", c.CV, res.MeanAcc, res.StdAcc, res.MeanMacroF1, res.StdMacroF1)
	}
	start := time.Now()
	f, err := forest.Train(ctx, d, c.config())
	if err != nil {
		return err
	}
	took := time.Since(start)
	m := &forest.Model{
		FormatVersion: forest.FormatVersion,
		Kind:          forest.KindLoadwatch,
		Legacy:        c.Features == features.SetLegacy,
		FeatureSet:    c.Features,
		Features:      d.Features,
		Classes:       d.Classes,
		DataHash:      forest.HashDataset(d),
		TrainedAt:     time.Now().UTC().Truncate(time.Second),
		Config:        c.config(),
		Report:        report,
		Forest:        f,
	}
	if err := writeModel(c.Out, m); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "trained %d trees on %d rows, %d classes, %d features (%s) in %v; wrote %s\n",
		f.NumTrees(), d.Rows(), len(d.Classes), d.NFeatures, c.Features, took.Round(time.Millisecond), c.Out)
	return nil
}

// writeModel writes m to path through a temporary file and a rename, so a
// server watching path never sees half a model.
func writeModel(path string, m *forest.Model) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	if err := m.Save(w); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

func readModel(path string) (*forest.Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, err := forest.Load(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := classify.CheckModel(m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

type modelEvalCmd struct {
	Model  string        `required:"" help:"Model file."`
	Data   []string      `required:"" sep:"," help:"Labelled readings CSV file(s), comma separated."`
	JSON   bool          `name:"json" help:"Print one JSON object (rows, accuracy, macro_f1, per_class, confusion)."`
	MaxGap time.Duration `default:"30s" help:"A longer gap between two readings of a device restarts its feature windows."`

	stdout io.Writer // nil = os.Stdout; set by tests
}

func (c *modelEvalCmd) Run(ctx context.Context) error {
	m, err := readModel(c.Model)
	if err != nil {
		return err
	}
	rows, err := classify.ReadFiles(c.Data...)
	if err != nil {
		return err
	}
	if _, err := classify.Labels(rows); err != nil {
		return err
	}
	x, _, err := classify.Featurize(m.FeatureSet, features.Config{MaxGap: c.MaxGap}, rows)
	if err != nil {
		return err
	}
	truth, classes := classify.Encode(rows, m.Classes)
	pred := make([]int32, len(rows))
	m.Forest.PredictBatch(x, pred, nil)
	rep := forest.Evaluate(classes, truth, pred)
	out := orStdout(c.stdout)
	if c.JSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printReport(out, rep)
	return nil
}

func orStdout(w io.Writer) io.Writer {
	if w == nil {
		return os.Stdout
	}
	return w
}

func printReport(w io.Writer, rep forest.Report) {
	fmt.Fprintf(w, "rows %d  accuracy %.4f  macro-F1 %.4f\n\n", rep.Rows, rep.Accuracy, rep.MacroF1)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "class\tprecision\trecall\tF1\tsupport\t")
	for _, cl := range rep.Confusion.Classes {
		s := rep.PerClass[cl]
		fmt.Fprintf(tw, "%s\t%.4f\t%.4f\t%.4f\t%d\t\n", cl, s.Precision, s.Recall, s.F1, s.Support)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nconfusion (rows = true class, columns = predicted):")
	tw = tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "\t")
	for i := range rep.Confusion.Classes {
		fmt.Fprintf(tw, "[%d]\t", i)
	}
	fmt.Fprintln(tw)
	for i, row := range rep.Confusion.Matrix {
		fmt.Fprintf(tw, "[%d] %s\t", i, rep.Confusion.Classes[i])
		for _, v := range row {
			fmt.Fprintf(tw, "%d\t", v)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

type modelPredictCmd struct {
	Model  string        `required:"" help:"Model file."`
	Data   string        `required:"" help:"Readings CSV file (label column optional)."`
	Out    string        `default:"-" help:"Output CSV file (- = standard output)."`
	MaxGap time.Duration `default:"30s" help:"A longer gap between two readings of a device restarts its feature windows."`
}

func (c *modelPredictCmd) Run(ctx context.Context) error {
	m, err := readModel(c.Model)
	if err != nil {
		return err
	}
	in, err := os.Open(c.Data)
	if err != nil {
		return err
	}
	defer in.Close()
	rd, err := readingscsv.NewReader(bufio.NewReader(in))
	if err != nil {
		return fmt.Errorf("%s: %w", c.Data, err)
	}
	var out io.Writer = os.Stdout
	var file *os.File
	if c.Out != "-" {
		file, err = os.Create(c.Out)
		if err != nil {
			return err
		}
		defer file.Close()
		out = file
	}
	bw := bufio.NewWriter(out)
	cw := csv.NewWriter(bw)
	if err := cw.Write(append(append([]string(nil), rd.Header()...), "predicted", "confidence")); err != nil {
		return err
	}
	streams, err := features.NewStreams(m.FeatureSet, features.Config{MaxGap: c.MaxGap})
	if err != nil {
		return err
	}
	x := make([]float32, streams.NumFeatures())
	var rec []string
	for n := 0; ; n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		row, err := rd.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", c.Data, err)
		}
		streams.Push(row.Device, row.Reading, x)
		cl, p := m.Forest.Predict(x)
		rec = append(rec[:0], rd.Record()...)
		rec = append(rec, m.Classes[cl], strconv.FormatFloat(float64(p), 'f', 4, 32))
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if file != nil {
		return file.Close()
	}
	return nil
}

type modelReportCmd struct {
	Data     []string      `required:"" sep:"," help:"Labelled readings CSV file(s), comma separated."`
	CV       int           `name:"cv" default:"5" help:"Number of time-blocked folds."`
	Scheme   string        `default:"runs" enum:"runs,class-blocks,device-blocks" help:"runs: whole runs (episodes of one label on one device) are held out, a class with fewer than K runs is split within; class-blocks: the rows of each (device, label) are cut in time order into K blocks; device-blocks: each device's rows are cut into K time blocks."`
	Purge    time.Duration `default:"10s" help:"Keep training rows within this time of a test block of the same group out of that fold's training."`
	JSON     bool          `name:"json" help:"Print the result as JSON."`
	FoldsOut string        `help:"Write the fold assignment (line,device,fold,excluded) to this CSV file, for tools/eval."`
	Without  []string      `sep:"," help:"Ablation: treat these features (names, or prefixes ending in *) as not measured."`
	Multi    bool          `name:"multi-label" help:"Train one on/off forest per appliance instead of one forest over combination labels."`
	PredOut  string        `name:"predictions-out" help:"Write each row's out-of-fold prediction (line,device,power,label,predicted,fold) to this CSV file."`
	forestFlags
}

func (c *modelReportCmd) Run(ctx context.Context) error {
	rows, err := classify.ReadFiles(c.Data...)
	if err != nil {
		return err
	}
	d, err := classify.BuildDataset(c.Features, c.featureConfig(), rows)
	if err != nil {
		return err
	}
	if err := classify.Mask(&d, c.Without); err != nil {
		return err
	}
	folds, err := classify.MakeFolds(rows, c.CV, c.Scheme, c.Purge)
	if err != nil {
		return err
	}
	if c.FoldsOut != "" {
		if err := writeFolds(c.FoldsOut, rows, folds); err != nil {
			return err
		}
	}
	start := time.Now()
	cv := classify.CrossValidate
	if c.Multi {
		cv = classify.CrossValidateMulti
	}
	res, err := cv(ctx, d, folds, c.config(), func(k int, s classify.FoldScore) {
		if !c.JSON {
			fmt.Printf("fold %d: train %6d  test %6d  accuracy %.4f  macro-F1 %.4f\n", k, s.TrainRows, s.TestRows, s.Accuracy, s.MacroF1)
		}
	})
	if err != nil {
		return err
	}
	if c.PredOut != "" {
		if err := writePredictions(c.PredOut, rows, folds, res); err != nil {
			return err
		}
	}
	if c.JSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Printf("\n%s, %d folds, purge %v, features %s, %d trees, seed %d (%v)\n", c.Scheme, c.CV, c.Purge, c.Features, c.Trees, c.Seed, time.Since(start).Round(time.Millisecond))
	fmt.Printf("mean accuracy %.4f +- %.4f   mean macro-F1 %.4f +- %.4f\n\npooled over all folds:\n", res.MeanAcc, res.StdAcc, res.MeanMacroF1, res.StdMacroF1)
	printReport(os.Stdout, res.Pooled)
	return nil
}

// writeFolds writes the fold of every row as CSV: the row's line in its
// file, its device, the fold it is tested in, and the folds from whose
// training it is purged (';'-separated).
func writeFolds(path string, rows []readingscsv.Row, f *classify.Folds) error {
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(out)
	w := csv.NewWriter(bw)
	w.Write([]string{"line", "device", "fold", "excluded"})
	var ex []string
	for i, r := range rows {
		ex = ex[:0]
		for k := 0; k < f.K; k++ {
			if f.Excluded[i]&(1<<k) != 0 {
				ex = append(ex, strconv.Itoa(k))
			}
		}
		w.Write([]string{strconv.Itoa(r.Line), r.Device, strconv.Itoa(int(f.Test[i])), strings.Join(ex, ";")})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		out.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// writePredictions writes the out-of-fold prediction of every row.
func writePredictions(path string, rows []readingscsv.Row, f *classify.Folds, res *classify.CVResult) error {
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(out)
	w := csv.NewWriter(bw)
	w.Write([]string{"line", "device", "power", "label", "predicted", "fold"})
	classes := res.Pooled.Confusion.Classes
	for i, r := range rows {
		w.Write([]string{strconv.Itoa(r.Line), r.Device, strconv.FormatFloat(float64(r.Reading.Power), 'f', -1, 64),
			r.Label, classes[res.Predicted[i]], strconv.Itoa(int(f.Test[i]))})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		out.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
