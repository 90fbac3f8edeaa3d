package otaserver

import (
	"context"
	"crypto/subtle"
	"errors"
	"sync"
)

// ErrBadToken is returned by Tokens for an unknown or revoked token.
var ErrBadToken = errors.New("otaserver: unknown or revoked token")

// Tokens is a DeviceAuth over a fixed token table, for tests and small
// setups until the device registry provides one.
type Tokens struct {
	mu sync.Mutex
	m  map[string]string // token -> device
}

// NewTokens returns a table from token to device id.
func NewTokens(m map[string]string) *Tokens {
	t := &Tokens{m: map[string]string{}}
	for k, v := range m {
		t.m[k] = v
	}
	return t
}

// Set adds or replaces a token.
func (t *Tokens) Set(token, device string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.m[token] = device
}

// Revoke removes a token.
func (t *Tokens) Revoke(token string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, token)
}

// DeviceForToken implements DeviceAuth; the comparison does not depend on
// where the first differing byte is.
func (t *Tokens) DeviceForToken(_ context.Context, token string) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id := ""
	for k, v := range t.m {
		if subtle.ConstantTimeCompare([]byte(k), []byte(token)) == 1 {
			id = v
		}
	}
	if id == "" {
		return "", ErrBadToken
	}
	return id, nil
}
