package forest

import (
	"bytes"
	"context"
	"math"
	"testing"
)

func TestSmoke(t *testing.T) {
	d := synthetic(2452, 1, 0)
	f, err := Train(context.Background(), d, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	classes := make([]int32, d.Rows())
	f.PredictBatch(d.X, classes, nil)
	r := Evaluate(d.Classes, d.Y, classes)
	t.Logf("train acc %.3f nodes %d values %d imp %v", r.Accuracy, f.NumNodes(), len(f.values), f.Importances())
	m := &Model{Kind: KindLoadwatch, Features: d.Features, Classes: d.Classes, Forest: f}
	var buf bytes.Buffer
	if err := m.Save(&buf); err != nil {
		t.Fatal(err)
	}
	t.Logf("model %d bytes", buf.Len())
	m2, err := Load(&buf)
	if err != nil {
		t.Fatal(err)
	}
	_ = math.Pi
	_ = m2
}
