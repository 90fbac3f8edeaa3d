package loadsim_test

import (
	"fmt"
	"time"

	"loadwatch/internal/loadsim"
)

func ExampleParseSchedule() {
	s, err := loadsim.ParseSchedule("0s:+laptop; 45s:surge+8V/5s; 90s:-laptop; repeat=2m")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s)
	_, err = loadsim.ParseSchedule("1s:+kettle")
	fmt.Println(err)
	// Output:
	// 0s:+laptop; 45s:surge+8V/5s; 1m30s:-laptop; repeat=2m0s
	// schedule entry 1 "1s:+kettle": unknown appliance "kettle" (want one of 3d_printer, laptop, printer, solder)
}

func ExampleCircuit() {
	c := loadsim.NewCircuit(loadsim.Config{Seed: 1, Grid: loadsim.Grid{Still: true}, Standby: -1})
	t0 := c.Start()
	c.Switch(loadsim.Printer3D, true, t0) // heat-up: bed and hot end
	r := c.At(t0.Add(10 * time.Second))
	fmt.Println(c.Label(t0.Add(10*time.Second)), r.Power > 250, r.Voltage < 230)
	c.SetRelay(false, t0.Add(20*time.Second))
	r = c.At(t0.Add(30 * time.Second))
	fmt.Println(c.Label(t0.Add(30*time.Second)), r.Current, r.Voltage)
	// Output:
	// 3d_printer true true
	// nothing 0.000 A 230.0 V
}
