//go:build !linux

package forest

// threadCPU is only measured on Linux.
func threadCPU() float64 { return -1 }
