package ota

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrBadVersion is returned for a string that is not a semantic version.
var ErrBadVersion = errors.New("ota: not a semantic version")

// Version is a semantic version (semver.org 2.0.0). A leading "v" is
// accepted and String always writes one, so "1.2.3" and "v1.2.3" are the
// same version.
type Version struct {
	Major, Minor, Patch uint64
	Pre                 []string // pre-release identifiers, "rc.1" -> ["rc","1"]
	Build               string   // build metadata; ignored by Compare
}

// ParseVersion parses "v1.2.3", "1.2.3-rc.1" or "v1.2.3+build.5".
func ParseVersion(s string) (Version, error) {
	var v Version
	in := s
	s = strings.TrimPrefix(s, "v")
	if i := strings.IndexByte(s, '+'); i >= 0 {
		v.Build = s[i+1:]
		s = s[:i]
		if v.Build == "" || !validIdents(v.Build, false) {
			return Version{}, fmt.Errorf("%w: %q: bad build metadata", ErrBadVersion, in)
		}
	}
	if i := strings.IndexByte(s, '-'); i >= 0 {
		pre := s[i+1:]
		s = s[:i]
		if pre == "" || !validIdents(pre, true) {
			return Version{}, fmt.Errorf("%w: %q: bad pre-release", ErrBadVersion, in)
		}
		v.Pre = strings.Split(pre, ".")
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return Version{}, fmt.Errorf("%w: %q: want MAJOR.MINOR.PATCH", ErrBadVersion, in)
	}
	nums := [3]*uint64{&v.Major, &v.Minor, &v.Patch}
	for i, p := range parts {
		if !isNumeric(p) || (len(p) > 1 && p[0] == '0') {
			return Version{}, fmt.Errorf("%w: %q: bad number %q", ErrBadVersion, in, p)
		}
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return Version{}, fmt.Errorf("%w: %q: %w", ErrBadVersion, in, err)
		}
		*nums[i] = n
	}
	return v, nil
}

// MustParseVersion is ParseVersion for constants in tests and examples;
// it panics on a bad version.
func MustParseVersion(s string) Version {
	v, err := ParseVersion(s)
	if err != nil {
		panic(err)
	}
	return v
}

func isNumeric(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func validIdents(s string, pre bool) bool {
	for _, id := range strings.Split(s, ".") {
		if id == "" {
			return false
		}
		for i := 0; i < len(id); i++ {
			c := id[i]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
				return false
			}
		}
		if pre && isNumeric(id) && len(id) > 1 && id[0] == '0' {
			return false
		}
	}
	return true
}

// String renders the version with a leading "v".
func (v Version) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "v%d.%d.%d", v.Major, v.Minor, v.Patch)
	if len(v.Pre) > 0 {
		b.WriteByte('-')
		b.WriteString(strings.Join(v.Pre, "."))
	}
	if v.Build != "" {
		b.WriteByte('+')
		b.WriteString(v.Build)
	}
	return b.String()
}

// Compare returns -1, 0 or +1 as v is lower than, equal to or higher than
// w in semantic-version precedence (build metadata does not count).
func (v Version) Compare(w Version) int {
	for _, d := range [3][2]uint64{{v.Major, w.Major}, {v.Minor, w.Minor}, {v.Patch, w.Patch}} {
		if d[0] != d[1] {
			if d[0] < d[1] {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(v.Pre) == 0 && len(w.Pre) == 0:
		return 0
	case len(v.Pre) == 0:
		return 1 // a release ranks above its pre-releases
	case len(w.Pre) == 0:
		return -1
	}
	for i := 0; i < len(v.Pre) && i < len(w.Pre); i++ {
		if c := compareIdent(v.Pre[i], w.Pre[i]); c != 0 {
			return c
		}
	}
	switch {
	case len(v.Pre) < len(w.Pre):
		return -1
	case len(v.Pre) > len(w.Pre):
		return 1
	}
	return 0
}

func compareIdent(a, b string) int {
	an, bn := isNumeric(a), isNumeric(b)
	switch {
	case an && bn:
		if len(a) != len(b) { // no leading zeros, so longer is larger
			if len(a) < len(b) {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	case an:
		return -1 // numeric identifiers rank below alphanumeric ones
	case bn:
		return 1
	}
	return strings.Compare(a, b)
}
