package otaagent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"loadwatch/internal/ota"
)

// Phases of a pending update, written to the state file before each step
// so that a restart after a crash knows what to finish.
const (
	PhaseSwap     = "swap"     // about to rename the new binary over the old one
	PhaseTrial    = "trial"    // new binary in place, not yet healthy
	PhaseRollback = "rollback" // restoring the previous binary
)

// Pending is an update that is not yet known good.
type Pending struct {
	Version    string `json:"version"`
	From       string `json:"from"`
	Phase      string `json:"phase"`
	SHA256     string `json:"sha256"`      // of the new binary
	PrevSHA256 string `json:"prev_sha256"` // of the binary it replaces
	Boots      int    `json:"boots"`       // starts counted by the guard
	Reason     string `json:"reason,omitempty"`
	Started    string `json:"started"`
}

// Report is a result waiting to be sent on the next contact (the same
// JSON the server's /ota/v1/report takes).
type Report struct {
	Kind    string `json:"kind"` // apply, result, refused
	Channel string `json:"channel"`
	OS      string `json:"os"`
	Arch    string `json:"arch"`
	Running string `json:"running"`
	Version string `json:"version"`
	OK      bool   `json:"ok"`
	Detail  string `json:"detail,omitempty"`
	Time    string `json:"time"`
}

// State is Dir/state.json.
type State struct {
	Current    string   `json:"current,omitempty"` // last version known good
	Pending    *Pending `json:"pending,omitempty"`
	Bad        []string `json:"bad,omitempty"` // versions that failed here
	Unreported []Report `json:"unreported,omitempty"`
}

// LoadState reads dir/state.json; a missing file is an empty state.
func LoadState(dir string) (State, error) {
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("ota: state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, fmt.Errorf("ota: state %s: %w", filepath.Join(dir, "state.json"), err)
	}
	return s, nil
}

func saveState(dir string, s State) error {
	if len(s.Unreported) > 50 { // bounded: the oldest reports go first
		s.Unreported = s.Unreported[len(s.Unreported)-50:]
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return ota.WriteFileAtomic(filepath.Join(dir, "state.json"), append(b, '\n'), 0o600)
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// linkOver makes dst a durable second name of src's content: a hard link
// (or a copy where links are impossible) to a temporary name, renamed
// over dst, directory fsynced.
func linkOver(src, dst string) error {
	tmp := dst + ".tmp"
	os.Remove(tmp)
	if err := os.Link(src, tmp); err != nil {
		if err := copyFile(src, tmp); err != nil {
			return fmt.Errorf("ota: copy %s: %w", src, err)
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("ota: rename %s: %w", dst, err)
	}
	return ota.SyncDir(filepath.Dir(dst))
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
