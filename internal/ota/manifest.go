package ota

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// SchemaVersion is the manifest schema this package writes and reads.
const SchemaVersion = 1

// Manifest errors, checked with errors.Is.
var (
	ErrBadManifest    = errors.New("ota: malformed manifest")
	ErrWrongPlatform  = errors.New("ota: release is for another platform")
	ErrWrongChannel   = errors.New("ota: release is for another channel")
	ErrDowngrade      = errors.New("ota: release is older than the running version")
	ErrNoUpdate       = errors.New("ota: already running this version")
	ErrTooOld         = errors.New("ota: running version is below the release's minimum version")
	ErrKnownBad       = errors.New("ota: release failed on this device before")
	ErrBinaryMismatch = errors.New("ota: binary does not match the manifest")
)

// Arches are the architectures releases are built for (GOARCH, with arm
// split by GOARM: armv7 is GOARCH=arm GOARM=7).
var Arches = []string{"amd64", "arm64", "armv7"}

// MaxLegacyBinary bounds how large a binary signed with minisign's legacy
// (non-prehashed) algorithm may be: verifying it needs it all in memory.
const MaxLegacyBinary = 64 << 20

// Manifest is update.json: the original firmware's {"version","url"} plus
// everything a device needs to decide and to verify. The whole file is
// signed (update.json.minisig beside it), so every field is authentic once
// Check has accepted it.
type Manifest struct {
	Schema     int       `json:"schema"`
	Version    string    `json:"version"`
	URL        string    `json:"url"`    // binary; absolute, or relative to the manifest's URL
	Size       int64     `json:"size"`   // bytes
	SHA256     string    `json:"sha256"` // hex
	Signature  string    `json:"signature"`
	MinVersion string    `json:"min_version,omitempty"`
	Channel    string    `json:"channel"`
	OS         string    `json:"os"`
	Arch       string    `json:"arch"`
	Published  time.Time `json:"published"`
	Rollout    Plan      `json:"rollout"`
	Notes      string    `json:"notes,omitempty"`
}

// Plan is the rollout plan signed into a manifest: the share of devices
// that get the release first. The live stage (after promote or halt) is
// server state, so promoting needs no signing key; see docs/OTA.md.
type Plan struct {
	Percent float64 `json:"percent"`
}

// Platform is "os-arch", as in the manifest path.
func (m Manifest) Platform() string { return m.OS + "-" + m.Arch }

// ParseManifest decodes and validates update.json. It does not check the
// signature: use Policy.Check on data from outside.
func ParseManifest(data []byte) (Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("%w: %w", ErrBadManifest, err)
	}
	if dec.More() {
		return Manifest{}, fmt.Errorf("%w: trailing data", ErrBadManifest)
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// Validate checks every field's form.
func (m Manifest) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadManifest, fmt.Sprintf(format, a...))
	}
	if m.Schema != SchemaVersion {
		return bad("schema %d, want %d", m.Schema, SchemaVersion)
	}
	if _, err := ParseVersion(m.Version); err != nil {
		return bad("version: %v", err)
	}
	if m.MinVersion != "" {
		if _, err := ParseVersion(m.MinVersion); err != nil {
			return bad("min_version: %v", err)
		}
	}
	if m.URL == "" || strings.ContainsAny(m.URL, " \t\r\n") {
		return bad("url %q", m.URL)
	}
	if m.Size <= 0 {
		return bad("size %d", m.Size)
	}
	if b, err := hex.DecodeString(m.SHA256); err != nil || len(b) != sha256.Size {
		return bad("sha256 %q", m.SHA256)
	}
	if strings.TrimSpace(m.Signature) == "" {
		return fmt.Errorf("%w: binary has no signature", ErrUnsigned)
	}
	if err := ValidName("channel", m.Channel); err != nil {
		return bad("%v", err)
	}
	if err := ValidName("os", m.OS); err != nil {
		return bad("%v", err)
	}
	if err := ValidArch(m.Arch); err != nil {
		return bad("%v", err)
	}
	if m.Published.IsZero() {
		return bad("no published time")
	}
	if m.Rollout.Percent <= 0 || m.Rollout.Percent > 100 {
		return bad("rollout percent %v", m.Rollout.Percent)
	}
	return nil
}

// ValidName checks a channel or os name: 1-32 of [a-z0-9_.] not starting
// with a dot, so it is safe as a path element.
func ValidName(what, s string) error {
	if s == "" || len(s) > 32 || s[0] == '.' {
		return fmt.Errorf("%s %q: want 1-32 characters of a-z, 0-9, underscore and dot, not starting with a dot", what, s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.') {
			return fmt.Errorf("%s %q: want 1-32 characters of a-z, 0-9, underscore and dot, not starting with a dot", what, s)
		}
	}
	return nil
}

// ValidArch accepts one of Arches.
func ValidArch(s string) error {
	for _, a := range Arches {
		if s == a {
			return nil
		}
	}
	return fmt.Errorf("arch %q: want one of %s", s, strings.Join(Arches, ", "))
}

// Encode writes the manifest as indented JSON with a final newline.
func (m Manifest) Encode() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Policy is what a device accepts.
type Policy struct {
	Keys           Keyring
	Current        Version // the running version
	Channel        string
	OS, Arch       string
	AllowDowngrade bool     // accept a lower version (an explicit operator choice)
	Bad            []string // versions that already failed on this device
}

// Check verifies the manifest signature over the exact bytes received and
// then decides whether the release applies. It returns the manifest with
// ErrNoUpdate when it is the running version; every other error means the
// manifest must not be used.
func (p Policy) Check(manifest, sig []byte) (Manifest, error) {
	if len(p.Keys) == 0 {
		return Manifest{}, fmt.Errorf("%w: no pinned public key", ErrUnknownKey)
	}
	if len(bytes.TrimSpace(sig)) == 0 {
		return Manifest{}, fmt.Errorf("%w: manifest", ErrUnsigned)
	}
	if _, err := p.Keys.Verify(manifest, sig); err != nil {
		return Manifest{}, fmt.Errorf("manifest: %w", err)
	}
	m, err := ParseManifest(manifest)
	if err != nil {
		return Manifest{}, err
	}
	if m.OS != p.OS || m.Arch != p.Arch {
		return m, fmt.Errorf("%w: %s, this device is %s-%s", ErrWrongPlatform, m.Platform(), p.OS, p.Arch)
	}
	if m.Channel != p.Channel {
		return m, fmt.Errorf("%w: %s, this device follows %s", ErrWrongChannel, m.Channel, p.Channel)
	}
	v, _ := ParseVersion(m.Version)
	for _, b := range p.Bad {
		if bv, err := ParseVersion(b); err == nil && bv.Compare(v) == 0 {
			return m, fmt.Errorf("%w: %s", ErrKnownBad, m.Version)
		}
	}
	switch c := v.Compare(p.Current); {
	case c == 0:
		return m, ErrNoUpdate
	case c < 0 && !p.AllowDowngrade:
		return m, fmt.Errorf("%w: %s < %s", ErrDowngrade, m.Version, p.Current)
	}
	if m.MinVersion != "" {
		if min, _ := ParseVersion(m.MinVersion); p.Current.Compare(min) < 0 {
			return m, fmt.Errorf("%w: %s < %s", ErrTooOld, p.Current, m.MinVersion)
		}
	}
	return m, nil
}

// VerifyBinary checks a downloaded binary against a manifest that Check
// accepted: size, SHA-256 and the minisign signature by a pinned key.
func (m Manifest) VerifyBinary(keys Keyring, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("ota: verify binary: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("ota: verify binary: %w", err)
	}
	if st.Size() != m.Size {
		return fmt.Errorf("%w: size %d, manifest says %d", ErrBinaryMismatch, st.Size(), m.Size)
	}
	h := sha256.New()
	if _, err := keys.VerifyReader(io.TeeReader(f, h), []byte(m.Signature), MaxLegacyBinary); err != nil {
		// A bad digest is the clearer message when both are wrong.
		if errors.Is(err, ErrBadSignature) && hex.EncodeToString(h.Sum(nil)) != m.SHA256 {
			return fmt.Errorf("%w: sha256 %x, manifest says %s", ErrBinaryMismatch, h.Sum(nil), m.SHA256)
		}
		return fmt.Errorf("binary: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != m.SHA256 {
		return fmt.Errorf("%w: sha256 %s, manifest says %s", ErrBinaryMismatch, got, m.SHA256)
	}
	return nil
}
