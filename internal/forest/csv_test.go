package forest

import (
	"encoding/csv"
	"math"
	"os"
	"strconv"
	"testing"
)

// loadCSV reads the named numeric columns and the label of a readings CSV
// (empty = NaN). Class indices follow first appearance.
func loadCSV(t testing.TB, path string, cols []string) Dataset {
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	recs, err := csv.NewReader(fh).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	idx := map[string]int{}
	for i, h := range recs[0] {
		idx[h] = i
	}
	d := Dataset{NFeatures: len(cols), Features: cols}
	cls := map[string]int32{}
	for _, r := range recs[1:] {
		for _, c := range cols {
			v := float32(math.NaN())
			if s := r[idx[c]]; s != "" {
				f, _ := strconv.ParseFloat(s, 64)
				v = float32(f)
			}
			d.X = append(d.X, v)
		}
		l := r[idx["label"]]
		if _, ok := cls[l]; !ok {
			cls[l] = int32(len(d.Classes))
			d.Classes = append(d.Classes, l)
		}
		d.Y = append(d.Y, cls[l])
	}
	return d
}
