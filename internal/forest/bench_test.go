package forest

import (
	"bytes"
	"context"
	"runtime"
	"sync"
	"testing"
)

var benchOnce = sync.OnceValues(func() (Dataset, *Forest) {
	d := synthetic(2452, 1, 0)
	f, err := Train(context.Background(), d, DefaultConfig())
	if err != nil {
		panic(err)
	}
	return d, f
})

// BenchmarkTrain trains 100 trees on the 2,452-row synthetic set with all
// cores (GOMAXPROCS).
func BenchmarkTrain(b *testing.B) {
	d := synthetic(2452, 1, 0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Train(context.Background(), d, DefaultConfig()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPredict is one single-row prediction with the 100-tree forest.
func BenchmarkPredict(b *testing.B) {
	d, f := benchOnce()
	rows := d.Rows()
	f.Predict(d.X[:d.NFeatures]) // builds the packed layout, once per forest
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	cpu := threadCPU()
	i := 0
	for b.Loop() {
		f.Predict(d.X[i*d.NFeatures : (i+1)*d.NFeatures])
		i++
		if i == rows {
			i = 0
		}
	}
	if cpu >= 0 {
		b.ReportMetric((threadCPU()-cpu)*1e9/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkPredictBatch predicts the whole 2,452-row set per iteration on
// one goroutine; rows/s is reported.
func BenchmarkPredictBatch(b *testing.B) {
	d, f := benchOnce()
	classes := make([]int32, d.Rows())
	probs := make([]float32, d.Rows()*f.NumClasses())
	benchBatch(b, f, d.X, classes, probs)
}

// benchBatch runs PredictBatch on one locked OS thread and reports rows
// per second of wall time and, on Linux, of that thread's CPU time (fairer
// on a shared machine: time spent preempted does not count).
func benchBatch(b *testing.B, f *Forest, X []float32, classes []int32, probs []float32) {
	f.PredictBatch(X, classes, probs) // builds the packed layout, once per forest
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	cpu := threadCPU()
	for b.Loop() {
		f.PredictBatch(X, classes, probs)
	}
	rows := float64(b.N * len(classes))
	if cpu >= 0 {
		b.ReportMetric(rows/(threadCPU()-cpu), "cpu-rows/s")
	}
	b.ReportMetric(rows/b.Elapsed().Seconds(), "rows/s")
}

func benchModelFiles(b *testing.B) (jsonFile, binFile []byte) {
	d, f := benchOnce()
	m := &Model{Kind: KindLoadwatch, Features: d.Features, Classes: d.Classes, Forest: f}
	var j, bin bytes.Buffer
	if err := m.Save(&j); err != nil {
		b.Fatal(err)
	}
	if err := m.SaveBinary(&bin); err != nil {
		b.Fatal(err)
	}
	return j.Bytes(), bin.Bytes()
}

// BenchmarkLoad parses and checks the 100-tree benchmark model (JSON).
func BenchmarkLoad(b *testing.B) {
	j, _ := benchModelFiles(b)
	b.SetBytes(int64(len(j)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(bytes.NewReader(j)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadBinary is BenchmarkLoad for the compact binary form.
func BenchmarkLoadBinary(b *testing.B) {
	_, bin := benchModelFiles(b)
	b.SetBytes(int64(len(bin)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(bytes.NewReader(bin)); err != nil {
			b.Fatal(err)
		}
	}
}
