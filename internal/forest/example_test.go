package forest_test

import (
	"context"
	"fmt"

	"loadwatch/internal/forest"
)

// A forest learns which appliance draws a given power and current.
func Example() {
	d := forest.Dataset{
		NFeatures: 2, Features: []string{"power", "current"},
		Classes: []string{"nothing", "laptop", "solder"},
	}
	for i := range 30 {
		jitter := float32(i%5) * 0.2
		d.X = append(d.X, 0.5+jitter/10, 0.01, 45+jitter, 0.35, 48+jitter, 0.21)
		d.Y = append(d.Y, 0, 1, 2)
	}
	cfg := forest.DefaultConfig()
	cfg.Trees = 20
	f, err := forest.Train(context.Background(), d, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	class, prob := f.Predict([]float32{47.5, 0.21})
	fmt.Println(d.Classes[class], prob)
	class, _ = f.Predict([]float32{0.4, 0.01})
	fmt.Println(d.Classes[class])
	// Output:
	// solder 1
	// nothing
}
