//go:build !linux

package ota

import "errors"

// ReadPassword is only implemented on Linux; elsewhere use the
// environment variable.
func ReadPassword(prompt string) (string, error) {
	return "", errors.New("ota: password prompt is only supported on Linux; set LOADWATCH_OTA_PASSWORD")
}
