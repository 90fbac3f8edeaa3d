//go:build race

package agent

// raceEnabled: the race detector makes the simulated day take over a
// minute, so TestReferenceDay then runs only with LOADWATCH_LONG (the
// reference hour covers the same code paths).
const raceEnabled = true
