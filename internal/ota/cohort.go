package ota

import (
	"crypto/sha256"
	"encoding/binary"
)

// Buckets is how finely rollout percentages are resolved: 0.01 %.
const Buckets = 10000

// Bucket places a device in one of Buckets by a stable hash of its id. It
// does not depend on the release, so the devices in a 10 % cohort are the
// same for every release and a larger cohort always contains a smaller
// one (promotion never takes the release away from a device).
func Bucket(deviceID string) int {
	h := sha256.Sum256([]byte("loadwatch-ota-cohort\x00" + deviceID))
	return int(binary.BigEndian.Uint64(h[:8]) % Buckets)
}

// InCohort reports whether the device is inside the first percent of
// devices.
func InCohort(deviceID string, percent float64) bool {
	return float64(Bucket(deviceID)) < percent*Buckets/100
}
