package forest

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
)

// shape describes a forest and the work a set of rows does in it: what
// batch prediction speed depends on.
type shape struct {
	trees, nodes, leaves, mixedLeaves int
	maxDepth                          int     // deepest leaf
	meanLeafDepth                     float64 // over leaves, unweighted
	rows, nanRows                     int
	stepsPerRow                       float64 // node visits per row over all trees (root to leaf, root excluded)
	p50, p90, p99                     int     // percentiles of one row's depth in one tree
	maxOf8                            float64 // mean over trees and groups of 8 rows of the deepest walk (lock-step cost)
}

func (s shape) String() string {
	return fmt.Sprintf("%d trees, %d nodes (%d leaves, %.0f%% mixed), leaf depth mean %.1f max %d; "+
		"%d rows (%d with NaN): %.0f steps/row (%.2f per tree; p50 %d p90 %d p99 %d; deepest of 8 rows %.2f)",
		s.trees, s.nodes, s.leaves, 100*float64(s.mixedLeaves)/float64(max(1, s.leaves)), s.meanLeafDepth, s.maxDepth,
		s.rows, s.nanRows, s.stepsPerRow, s.stepsPerRow/float64(max(1, s.trees)), s.p50, s.p90, s.p99, s.maxOf8)
}

// forestShape measures f on the rows of X (row-major, NumFeatures each).
func forestShape(f *Forest, X []float32) shape {
	s := shape{trees: len(f.roots), nodes: len(f.nodes)}
	depth := make([]int, len(f.nodes))
	for t, root := range f.roots {
		end := int32(len(f.nodes))
		if t+1 < len(f.roots) {
			end = f.roots[t+1]
		}
		for i := root; i < end; i++ {
			n := &f.nodes[i]
			if n.isLeaf() {
				s.leaves++
				if n.isMixed() {
					s.mixedLeaves++
				}
				s.meanLeafDepth += float64(depth[i])
				s.maxDepth = max(s.maxDepth, depth[i])
				continue
			}
			depth[i+1] = depth[i] + 1
			depth[n.right] = depth[i] + 1
		}
	}
	s.meanLeafDepth /= float64(max(1, s.leaves))
	nf := f.nFeatures
	s.rows = len(X) / nf
	var all []int
	total, groups := 0.0, 0
	for _, root := range f.roots {
		deepest := 0
		for r := range s.rows {
			x := X[r*nf : (r+1)*nf]
			i := root
			for {
				j := stepNaN(f.nodes, x, i)
				if j == i {
					break
				}
				i = j
			}
			all = append(all, depth[i])
			deepest = max(deepest, depth[i])
			if r%8 == 7 || r == s.rows-1 {
				total += float64(deepest)
				groups++
				deepest = 0
			}
		}
	}
	for r := range s.rows {
		if hasNaN(X[r*nf : (r+1)*nf]) {
			s.nanRows++
		}
	}
	sum := 0
	for _, d := range all {
		sum += d
	}
	s.stepsPerRow = float64(sum) / float64(max(1, s.rows))
	slices.Sort(all)
	if len(all) > 0 {
		s.p50, s.p90, s.p99 = all[len(all)/2], all[len(all)*9/10], all[len(all)*99/100]
	}
	s.maxOf8 = total / float64(max(1, groups))
	return s
}

// modelFromEnv loads the forest and rows named by LOADWATCH_FOREST_MODEL
// (a model file) and LOADWATCH_FOREST_ROWS (little-endian float32 values,
// NumFeatures per row, e.g. the features of a readings CSV), or skips.
func modelFromEnv(tb testing.TB) (*Forest, []float32) {
	mp, rp := os.Getenv("LOADWATCH_FOREST_MODEL"), os.Getenv("LOADWATCH_FOREST_ROWS")
	if mp == "" || rp == "" {
		tb.Skip("set LOADWATCH_FOREST_MODEL and LOADWATCH_FOREST_ROWS to measure a model file on its rows")
	}
	mf, err := os.Open(mp)
	if err != nil {
		tb.Fatal(err)
	}
	defer mf.Close()
	m, err := Load(bufio.NewReader(mf))
	if err != nil {
		tb.Fatal(err)
	}
	raw, err := os.ReadFile(rp)
	if err != nil {
		tb.Fatal(err)
	}
	nf := m.Forest.NumFeatures()
	if len(raw)%(4*nf) != 0 {
		tb.Fatalf("%s: %d bytes is not a whole number of %d-feature float32 rows", rp, len(raw), nf)
	}
	X := make([]float32, len(raw)/4)
	for i := range X {
		X[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return m.Forest, X
}

// TestForestShape logs the shape of the benchmark forest (and of a model
// file, see modelFromEnv) and checks the step count against a direct walk.
func TestForestShape(t *testing.T) {
	d, f := benchOnce()
	s := forestShape(f, d.X)
	t.Logf("benchmark forest on its 2,452 training rows: %v", s)
	if s.leaves*2-s.trees != s.nodes {
		t.Errorf("%d leaves and %d trees but %d nodes: not full binary trees", s.leaves, s.trees, s.nodes)
	}
	if s.stepsPerRow < float64(s.trees) || s.maxOf8 < s.stepsPerRow/float64(s.trees) {
		t.Errorf("implausible shape %v", s)
	}
	if os.Getenv("LOADWATCH_FOREST_MODEL") != "" {
		f, X := modelFromEnv(t)
		name := os.Getenv("LOADWATCH_FOREST_MODEL")
		name = name[strings.LastIndex(name, "/")+1:]
		t.Logf("%s: %d features, %d classes, %v", name, f.NumFeatures(), f.NumClasses(), forestShape(f, X))
	}
}

// BenchmarkPredictBatchFile is BenchmarkPredictBatch for a model file and
// its rows (see modelFromEnv); it skips without them.
func BenchmarkPredictBatchFile(b *testing.B) {
	f, X := modelFromEnv(b)
	rows := len(X) / f.NumFeatures()
	classes := make([]int32, rows)
	probs := make([]float32, rows*f.NumClasses())
	benchBatch(b, f, X, classes, probs)
}
