package ota

import (
	"errors"
	"testing"
)

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{"v1.2.3", "v1.2.3", false},
		{"1.2.3", "v1.2.3", false},
		{"v1.0.0-rc.1", "v1.0.0-rc.1", false},
		{"v1.0.0-rc.1+git.abc", "v1.0.0-rc.1+git.abc", false},
		{"v10.20.30", "v10.20.30", false},
		{"v1.2", "", true},
		{"v1.2.3.4", "", true},
		{"v01.2.3", "", true},
		{"v1.2.3-", "", true},
		{"v1.2.3-rc..1", "", true},
		{"v1.2.3-01", "", true},
		{"v1.2.3+", "", true},
		{"v1.2.x", "", true},
		{"", "", true},
		{"v-1.2.3", "", true},
		{"v99999999999999999999.0.0", "", true},
	} {
		v, err := ParseVersion(tc.in)
		if tc.err {
			if !errors.Is(err, ErrBadVersion) {
				t.Errorf("ParseVersion(%q) = %v, %v; want ErrBadVersion", tc.in, v, err)
			}
			continue
		}
		if err != nil || v.String() != tc.want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %s", tc.in, v, err, tc.want)
		}
	}
}

func TestVersionCompare(t *testing.T) {
	// semver.org's precedence example, in ascending order.
	order := []string{"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
		"1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "1.10.0", "2.0.0"}
	for i := range order {
		for j := range order {
			a, b := MustParseVersion(order[i]), MustParseVersion(order[j])
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := a.Compare(b); got != want {
				t.Errorf("%s vs %s = %d, want %d", a, b, got, want)
			}
		}
	}
	if c := MustParseVersion("v1.0.0+a").Compare(MustParseVersion("1.0.0+b")); c != 0 {
		t.Errorf("build metadata changed precedence: %d", c)
	}
}

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"v1.2.3", "1.0.0-rc.1+b", "v0.0.0", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVersion(s)
		if err != nil {
			return
		}
		w, err := ParseVersion(v.String())
		if err != nil || w.Compare(v) != 0 || w.String() != v.String() {
			t.Fatalf("round trip %q -> %q -> %v, %v", s, v, w, err)
		}
	})
}

func BenchmarkVersionCompare(b *testing.B) {
	x, y := MustParseVersion("v1.2.3-rc.10"), MustParseVersion("v1.2.3-rc.9")
	for b.Loop() {
		if x.Compare(y) != 1 {
			b.Fatal("wrong order")
		}
	}
}
