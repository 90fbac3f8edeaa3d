package loadsim

import "math"

// The noise in this package is a pure function of (seed, stream, tick), so
// a value at time t does not depend on which times were asked for before:
// that keeps the circuit deterministic for out-of-order and concurrent calls.

// mix is splitmix64's finaliser.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// hash3 combines a seed, a stream id and a tick into 64 random bits.
func hash3(seed int64, stream uint64, tick int64) uint64 {
	h := mix(uint64(seed) + 0x9e3779b97f4a7c15)
	h = mix(h ^ (stream * 0xd6e8feb86659fd93))
	return mix(h ^ uint64(tick))
}

// uniform returns a value in [0, 1).
func uniform(seed int64, stream uint64, tick int64) float64 {
	return float64(hash3(seed, stream, tick)>>11) / (1 << 53)
}

// gauss returns a standard normal value (Box-Muller over two hashes).
func gauss(seed int64, stream uint64, tick int64) float64 {
	u1 := float64(hash3(seed, stream, tick)>>11)/(1<<53) + 1.0/(1<<54)
	u2 := uniform(seed, stream^0x5bd1e995, tick)
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

// smooth is value noise: gaussian knots every period, joined with a
// smoothstep, so it wanders slowly with a standard deviation of about 0.8.
// x is the time in the same unit as period.
func smooth(seed int64, stream uint64, x, period float64) float64 {
	k := math.Floor(x / period)
	f := x/period - k
	a := gauss(seed, stream, int64(k))
	b := gauss(seed, stream, int64(k)+1)
	f = f * f * (3 - 2*f)
	return a + (b-a)*f
}

// fnv is a small string hash used to derive per-appliance streams.
func fnv(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
