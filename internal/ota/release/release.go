// Package release is the operator's OTA release store: signed releases
// per channel and platform on disk, and the staged rollout state that
// decides which release each device is offered.
//
// Layout under the data directory (every file written atomically):
//
//	DATA/.lock                                   flock for read-modify-write
//	DATA/<channel>/<os>-<arch>/rollout.json      live rollout state
//	DATA/<channel>/<os>-<arch>/<version>/update.json
//	DATA/<channel>/<os>-<arch>/<version>/update.json.minisig
//	DATA/<channel>/<os>-<arch>/<version>/loadwatch-agent
//
// A release directory is written completely before rollout.json names
// it, and is never changed afterwards.
package release

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"loadwatch/internal/ota"
)

// BinaryName is the file name of a release's binary in the store.
const BinaryName = "loadwatch-agent"

// Errors, checked with errors.Is.
var (
	ErrNotFound   = errors.New("release: not found")
	ErrExists     = errors.New("release: version already published")
	ErrNotNewer   = errors.New("release: version is not newer than the current release")
	ErrNoRollout  = errors.New("release: no rollout in progress")
	ErrHalted     = errors.New("release: rollout is halted")
	ErrBadRequest = errors.New("release: bad request")
)

// DefaultStages are the cohort sizes promote steps through, in percent.
var DefaultStages = []float64{1, 10, 25, 50, 100}

// Rollout is the live state of one channel and platform.
type Rollout struct {
	Channel   string  `json:"channel"`
	OS        string  `json:"os"`
	Arch      string  `json:"arch"`
	Stable    string  `json:"stable,omitempty"`    // offered to every device outside the cohort
	Previous  string  `json:"previous,omitempty"`  // the stable release before Stable
	Candidate string  `json:"candidate,omitempty"` // being rolled out
	Percent   float64 `json:"percent,omitempty"`   // the candidate's cohort, percent of devices
	// Halted stops the candidate: every device is offered Stable.
	Halted     bool      `json:"halted,omitempty"`
	HaltReason string    `json:"halt_reason,omitempty"`
	HaltedAt   time.Time `json:"halted_at,omitzero"`
	// Automatic halt: more than FailureThreshold (0..1) of the devices
	// that reported a result for the candidate failed, once at least
	// MinResults devices reported.
	FailureThreshold float64 `json:"failure_threshold"`
	MinResults       int     `json:"min_results"`
	// Results is each device's last result for the candidate (true: good).
	Results map[string]bool `json:"results,omitempty"`
	Updated time.Time       `json:"updated"`
}

// Platform is "os-arch".
func (r Rollout) Platform() string { return r.OS + "-" + r.Arch }

// Failures counts failed and total results for the candidate.
func (r Rollout) Failures() (failed, total int) {
	for _, ok := range r.Results {
		total++
		if !ok {
			failed++
		}
	}
	return failed, total
}

// Offer returns the version a device is offered, "" for none.
func (r Rollout) Offer(deviceID string) string {
	if r.Candidate != "" && !r.Halted && ota.InCohort(deviceID, r.Percent) {
		return r.Candidate
	}
	return r.Stable
}

// Store is a release store in a directory. Methods are safe for
// concurrent use, also by several processes (the server and the CLI).
type Store struct {
	dir string
	now func() time.Time
}

// Open opens (and creates) a store directory. now may be nil (time.Now).
func Open(dir string, now func() time.Time) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	return &Store{dir: dir, now: now}, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// lock takes an exclusive (or shared) flock on DATA/.lock.
func (s *Store) lock(exclusive bool) (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("release: lock: %w", err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("release: lock: %w", err)
	}
	return func() { f.Close() }, nil
}

func (s *Store) platDir(channel, os_, arch string) string {
	return filepath.Join(s.dir, channel, os_+"-"+arch)
}

func checkNames(channel, os_, arch string) error {
	if err := ota.ValidName("channel", channel); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if err := ota.ValidName("os", os_); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if err := ota.ValidArch(arch); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	return nil
}

// SplitPlatform splits "linux-arm64".
func SplitPlatform(p string) (os_, arch string, err error) {
	os_, arch, ok := strings.Cut(p, "-")
	if !ok {
		return "", "", fmt.Errorf("%w: platform %q: want os-arch", ErrBadRequest, p)
	}
	return os_, arch, nil
}

func (s *Store) readRollout(channel, os_, arch string) (Rollout, error) {
	b, err := os.ReadFile(filepath.Join(s.platDir(channel, os_, arch), "rollout.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return Rollout{Channel: channel, OS: os_, Arch: arch, FailureThreshold: 0.2, MinResults: 1}, nil
	}
	if err != nil {
		return Rollout{}, fmt.Errorf("release: %w", err)
	}
	var r Rollout
	if err := json.Unmarshal(b, &r); err != nil {
		return Rollout{}, fmt.Errorf("release: rollout.json of %s/%s-%s: %w", channel, os_, arch, err)
	}
	return r, nil
}

func (s *Store) writeRollout(r Rollout) error {
	r.Updated = s.now().UTC()
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	dir := s.platDir(r.Channel, r.OS, r.Arch)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	return ota.WriteFileAtomic(filepath.Join(dir, "rollout.json"), append(b, '\n'), 0o644)
}

// update runs a read-modify-write of one rollout under the store lock.
func (s *Store) update(channel, os_, arch string, fn func(*Rollout) error) (Rollout, error) {
	if err := checkNames(channel, os_, arch); err != nil {
		return Rollout{}, err
	}
	unlock, err := s.lock(true)
	if err != nil {
		return Rollout{}, err
	}
	defer unlock()
	r, err := s.readRollout(channel, os_, arch)
	if err != nil {
		return Rollout{}, err
	}
	if err := fn(&r); err != nil {
		return r, err
	}
	return r, s.writeRollout(r)
}

// PublishRequest describes a release to publish.
type PublishRequest struct {
	Version    string
	Binary     string // path of the built binary
	Channel    string
	OS, Arch   string
	Percent    float64 // first cohort, percent; 100 makes it stable at once
	MinVersion string
	Notes      string
	// URL of the binary as written into update.json; empty: the path the
	// server serves it at, relative to the manifest ("<version>/loadwatch-agent").
	URL string
	Key ota.SecretKey
	// FailureThreshold and MinResults of the automatic halt (0: 0.2 and 1).
	FailureThreshold float64
	MinResults       int
}

// Publish signs the binary and a manifest for it, stores them and makes
// the release the rollout candidate (or the stable release at 100 %).
func (s *Store) Publish(req PublishRequest) (ota.Manifest, error) {
	if err := checkNames(req.Channel, req.OS, req.Arch); err != nil {
		return ota.Manifest{}, err
	}
	v, err := ota.ParseVersion(req.Version)
	if err != nil {
		return ota.Manifest{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if req.Percent <= 0 || req.Percent > 100 {
		return ota.Manifest{}, fmt.Errorf("%w: rollout %v%%: want more than 0 and at most 100", ErrBadRequest, req.Percent)
	}
	if req.FailureThreshold < 0 || req.FailureThreshold >= 1 {
		return ota.Manifest{}, fmt.Errorf("%w: failure threshold %v: want 0 <= t < 1", ErrBadRequest, req.FailureThreshold)
	}
	bin, err := os.ReadFile(req.Binary)
	if err != nil {
		return ota.Manifest{}, fmt.Errorf("release: read binary: %w", err)
	}
	if len(bin) == 0 {
		return ota.Manifest{}, fmt.Errorf("%w: binary %s is empty", ErrBadRequest, req.Binary)
	}
	platform := req.OS + "-" + req.Arch
	binSig, err := ota.Sign(req.Key, bytes.NewReader(bin), fmt.Sprintf("loadwatch-agent %s %s %s", v, platform, req.Channel))
	if err != nil {
		return ota.Manifest{}, err
	}
	sum := sha256.Sum256(bin)
	url := req.URL
	if url == "" {
		url = v.String() + "/" + BinaryName
	}
	m := ota.Manifest{
		Schema: ota.SchemaVersion, Version: v.String(), URL: url, Size: int64(len(bin)),
		SHA256: hex.EncodeToString(sum[:]), Signature: string(binSig), MinVersion: req.MinVersion,
		Channel: req.Channel, OS: req.OS, Arch: req.Arch, Published: s.now().UTC().Truncate(time.Second),
		Rollout: ota.Plan{Percent: req.Percent}, Notes: req.Notes,
	}
	if err := m.Validate(); err != nil {
		return ota.Manifest{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	mdata, err := m.Encode()
	if err != nil {
		return ota.Manifest{}, err
	}
	msig, err := ota.Sign(req.Key, bytes.NewReader(mdata), fmt.Sprintf("update.json %s %s %s", v, platform, req.Channel))
	if err != nil {
		return ota.Manifest{}, err
	}

	if err := s.add(m, bin, mdata, msig, req.Percent, req.FailureThreshold, req.MinResults); err != nil {
		return ota.Manifest{}, err
	}
	return m, nil
}

// add stores a signed release and makes it the candidate (or stable).
func (s *Store) add(m ota.Manifest, bin, mdata, msig []byte, percent, threshold float64, minResults int) error {
	v := ota.MustParseVersion(m.Version)
	_, err := s.update(m.Channel, m.OS, m.Arch, func(r *Rollout) error {
		for _, cur := range []string{r.Stable, r.Candidate} {
			if cur == "" {
				continue
			}
			if c := v.Compare(ota.MustParseVersion(cur)); c == 0 {
				return fmt.Errorf("%w: %s", ErrExists, v)
			} else if c < 0 && cur == r.Stable {
				return fmt.Errorf("%w: %s <= stable %s", ErrNotNewer, v, cur)
			}
		}
		rdir := filepath.Join(s.platDir(m.Channel, m.OS, m.Arch), v.String())
		if _, err := os.Stat(rdir); err == nil {
			return fmt.Errorf("%w: %s (directory %s exists)", ErrExists, v, rdir)
		}
		// Write the release into a temporary directory, then rename it
		// into place: a crash leaves either no release or a whole one.
		tmp := rdir + ".tmp"
		os.RemoveAll(tmp)
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			return fmt.Errorf("release: %w", err)
		}
		for name, data := range map[string][]byte{BinaryName: bin, "update.json": mdata, "update.json.minisig": msig} {
			if err := ota.WriteFileAtomic(filepath.Join(tmp, name), data, 0o644); err != nil {
				return err
			}
		}
		if err := os.Rename(tmp, rdir); err != nil {
			return fmt.Errorf("release: %w", err)
		}
		if err := ota.SyncDir(filepath.Dir(rdir)); err != nil {
			return err
		}
		if threshold > 0 {
			r.FailureThreshold = threshold
		}
		if minResults > 0 {
			r.MinResults = minResults
		}
		r.Halted, r.HaltReason, r.HaltedAt, r.Results = false, "", time.Time{}, nil
		if percent >= 100 {
			r.Previous, r.Stable, r.Candidate, r.Percent = r.Stable, v.String(), "", 0
		} else {
			r.Candidate, r.Percent = v.String(), percent
		}
		return nil
	})
	return err
}

// Import adds a release signed elsewhere (a directory holding
// update.json, update.json.minisig and loadwatch-agent, as Publish writes
// them) after verifying manifest and binary against keys, so the server
// never needs the signing key. percent 0 takes the manifest's rollout.
func (s *Store) Import(dir string, keys ota.Keyring, percent, threshold float64, minResults int) (ota.Manifest, error) {
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("release: import: %w", err)
		}
		return b, nil
	}
	mdata, err := read("update.json")
	if err != nil {
		return ota.Manifest{}, err
	}
	msig, err := read("update.json.minisig")
	if err != nil {
		return ota.Manifest{}, err
	}
	if _, err := keys.Verify(mdata, msig); err != nil {
		return ota.Manifest{}, fmt.Errorf("release: import: manifest: %w", err)
	}
	m, err := ota.ParseManifest(mdata)
	if err != nil {
		return ota.Manifest{}, err
	}
	if err := checkNames(m.Channel, m.OS, m.Arch); err != nil {
		return ota.Manifest{}, err
	}
	if err := m.VerifyBinary(keys, filepath.Join(dir, BinaryName)); err != nil {
		return ota.Manifest{}, fmt.Errorf("release: import: %w", err)
	}
	bin, err := read(BinaryName)
	if err != nil {
		return ota.Manifest{}, err
	}
	if percent == 0 {
		percent = m.Rollout.Percent
	}
	if percent <= 0 || percent > 100 || threshold < 0 || threshold >= 1 {
		return ota.Manifest{}, fmt.Errorf("%w: rollout %v%%, threshold %v", ErrBadRequest, percent, threshold)
	}
	return m, s.add(m, bin, mdata, msig, percent, threshold, minResults)
}

// Get returns one rollout's state.
func (s *Store) Get(channel, os_, arch string) (Rollout, error) {
	if err := checkNames(channel, os_, arch); err != nil {
		return Rollout{}, err
	}
	unlock, err := s.lock(false)
	if err != nil {
		return Rollout{}, err
	}
	defer unlock()
	return s.readRollout(channel, os_, arch)
}

// Listing is one channel and platform with its releases.
type Listing struct {
	Rollout
	Releases []ota.Manifest `json:"releases"`
}

// List returns every channel and platform with its stored releases,
// oldest release first.
func (s *Store) List() ([]Listing, error) {
	unlock, err := s.lock(false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	chans, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	var out []Listing
	for _, ch := range chans {
		if !ch.IsDir() || ota.ValidName("channel", ch.Name()) != nil {
			continue
		}
		plats, _ := os.ReadDir(filepath.Join(s.dir, ch.Name()))
		for _, p := range plats {
			os_, arch, err := SplitPlatform(p.Name())
			if err != nil || !p.IsDir() || checkNames(ch.Name(), os_, arch) != nil {
				continue
			}
			r, err := s.readRollout(ch.Name(), os_, arch)
			if err != nil {
				return nil, err
			}
			l := Listing{Rollout: r}
			vers, _ := os.ReadDir(filepath.Join(s.dir, ch.Name(), p.Name()))
			for _, vd := range vers {
				if _, err := ota.ParseVersion(vd.Name()); err != nil || !vd.IsDir() {
					continue
				}
				b, err := os.ReadFile(filepath.Join(s.dir, ch.Name(), p.Name(), vd.Name(), "update.json"))
				if err != nil {
					continue
				}
				if m, err := ota.ParseManifest(b); err == nil {
					l.Releases = append(l.Releases, m)
				}
			}
			sort.Slice(l.Releases, func(i, j int) bool {
				return ota.MustParseVersion(l.Releases[i].Version).Compare(ota.MustParseVersion(l.Releases[j].Version)) < 0
			})
			out = append(out, l)
		}
	}
	return out, nil
}

// Promote moves the candidate to the next cohort (to > 0: to that
// percentage). Reaching 100 % makes it the stable release. A halted
// rollout is resumed only with resume set (its failure tally is cleared).
func (s *Store) Promote(channel, os_, arch string, to float64, resume bool) (Rollout, error) {
	return s.update(channel, os_, arch, func(r *Rollout) error {
		if r.Candidate == "" {
			return ErrNoRollout
		}
		if r.Halted && !resume {
			return fmt.Errorf("%w (%s); promote with resume to continue", ErrHalted, r.HaltReason)
		}
		if to == 0 {
			to = 100
			for _, st := range DefaultStages {
				if st > r.Percent {
					to = st
					break
				}
			}
		}
		if to < r.Percent || to > 100 {
			return fmt.Errorf("%w: promote to %v%% from %v%%", ErrBadRequest, to, r.Percent)
		}
		if r.Halted {
			r.Halted, r.HaltReason, r.HaltedAt, r.Results = false, "", time.Time{}, nil
		}
		if to >= 100 {
			r.Previous, r.Stable, r.Candidate, r.Percent, r.Results = r.Stable, r.Candidate, "", 0, nil
			return nil
		}
		r.Percent = to
		return nil
	})
}

// Halt stops the candidate's rollout.
func (s *Store) Halt(channel, os_, arch, reason string) (Rollout, error) {
	return s.update(channel, os_, arch, func(r *Rollout) error {
		if r.Candidate == "" {
			return ErrNoRollout
		}
		if !r.Halted {
			r.Halted, r.HaltReason, r.HaltedAt = true, reason, s.now().UTC()
		}
		return nil
	})
}

// Offer returns the version the device is offered ("" for none).
func (s *Store) Offer(channel, os_, arch, deviceID string) (string, error) {
	r, err := s.Get(channel, os_, arch)
	if err != nil {
		return "", err
	}
	return r.Offer(deviceID), nil
}

// File opens one file of a stored release: "update.json",
// "update.json.minisig" or BinaryName.
func (s *Store) File(channel, os_, arch, version, name string) (*os.File, error) {
	if err := checkNames(channel, os_, arch); err != nil {
		return nil, err
	}
	v, err := ota.ParseVersion(version)
	if err != nil || v.String() != version {
		return nil, fmt.Errorf("%w: version %q", ErrNotFound, version)
	}
	if !slices.Contains([]string{"update.json", "update.json.minisig", BinaryName}, name) {
		return nil, fmt.Errorf("%w: file %q", ErrNotFound, name)
	}
	f, err := os.Open(filepath.Join(s.platDir(channel, os_, arch), version, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s/%s-%s %s %s", ErrNotFound, channel, os_, arch, version, name)
	}
	return f, err
}

// ReadFile is File plus read-all, for the small manifest files.
func (s *Store) ReadFile(channel, os_, arch, version, name string) ([]byte, error) {
	f, err := s.File(channel, os_, arch, version, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// RecordResult counts a device's result for a version. A result for the
// candidate may halt the rollout automatically; halted reports whether
// this result did.
func (s *Store) RecordResult(channel, os_, arch, deviceID, version string, ok bool) (r Rollout, halted bool, err error) {
	r, err = s.update(channel, os_, arch, func(r *Rollout) error {
		if r.Candidate == "" || version != r.Candidate {
			return nil
		}
		if r.Results == nil {
			r.Results = map[string]bool{}
		}
		r.Results[deviceID] = ok
		failed, total := r.Failures()
		if !r.Halted && total >= max(r.MinResults, 1) && float64(failed) > r.FailureThreshold*float64(total) {
			r.Halted, r.HaltedAt = true, s.now().UTC()
			r.HaltReason = fmt.Sprintf("automatic: %d of %d devices failed %s (threshold %.0f%%)", failed, total, version, r.FailureThreshold*100)
			halted = true
		}
		return nil
	})
	return r, halted, err
}
