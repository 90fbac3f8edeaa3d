package telemetry_test

import (
	"fmt"
	"time"

	"loadwatch/internal/power"
	"loadwatch/internal/telemetry"
)

func Example() {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	m := telemetry.Message{Epoch: "b7f3c2a1", Readings: []telemetry.Telemetry{{
		Seq: 7, ClockSynced: true, State: telemetry.StateActive,
		// The meter gave voltage and power only: nothing else is sent.
		Reading: power.Reading{Time: at, Voltage: 230.1, Power: 61.5, Has: power.FieldVoltage | power.FieldPower},
	}}}
	payload := m.Marshal()
	fmt.Println(string(payload))

	got, err := telemetry.DecodeTelemetry(payload, at, telemetry.Limits{})
	fmt.Println(got.Readings[0].Reading.Power, err)

	_, err = telemetry.DecodeTelemetry([]byte(`{"v":1,"epoch":"e","seq":1,"ts":"2026-03-01T12:00:00Z","state":"active","power":-3}`), at, telemetry.Limits{})
	fmt.Println(telemetry.ReasonOf(err), err)
	// Output:
	// {"v":1,"epoch":"b7f3c2a1","seq":7,"ts":"2026-03-01T12:00:00.000Z","clock_synced":true,"voltage":230.1,"power":61.5,"state":"active"}
	// 61.5 W <nil>
	// negative_power telemetry: negative_power (power)
}

func ExampleParseTopic() {
	dev, ch, err := telemetry.ParseTopic("loadwatch/v1/pi-7.3/cmd/ack")
	fmt.Println(dev, ch, err)
	agent, addr, _, _ := telemetry.SplitDevice(dev)
	fmt.Println(agent, addr, telemetry.Owns("pi-7", dev), telemetry.Owns("pi-8", dev))
	_, _, err = telemetry.ParseTopic("loadwatch/v1/+/telemetry")
	fmt.Println(telemetry.ReasonOf(err))
	// Output:
	// pi-7.3 cmd/ack <nil>
	// pi-7 3 true false
	// bad_device_id
}
