package store_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"loadwatch/internal/store"
)

func Example() {
	dir, _ := os.MkdirTemp("", "store-example")
	defer os.RemoveAll(dir)
	s, err := store.Open(dir, store.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	kitchen := []store.Label{{Name: store.LabelDevice, Value: "kitchen"}}
	var batch []store.Sample
	for i := range 12 {
		batch = append(batch, store.Sample{Metric: store.MetricPower, Labels: kitchen,
			T: store.Millis(t0.Add(time.Duration(i) * 5 * time.Second)), V: 100 + float64(i)})
	}
	if err := s.Append(context.Background(), batch); err != nil {
		fmt.Println(err)
		return
	}
	res, err := s.Query(context.Background(), `avg_over_time(loadwatch_power_watts[1m])`, t0.Add(55*time.Second))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, ser := range res.Series {
		fmt.Println(ser.Labels, ser.Points[0].V)
	}
	// Output: [{device kitchen}] 105.5
}
