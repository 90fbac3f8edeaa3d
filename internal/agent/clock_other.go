//go:build !linux

package agent

func kernelSynced() (synced, known bool) { return false, false }
