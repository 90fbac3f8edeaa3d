package labels

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestValidLabel(t *testing.T) {
	for _, c := range []struct {
		s  string
		ok bool
	}{
		{"kettle", true}, {"laptop+printer", true}, {"3d_printer", true}, {"a+b+c", true},
		{"", false}, {"Kettle", false}, {"laptop+", false}, {"+laptop", false}, {"a++b", false},
		{"kettle ", false}, {"ké", false}, {string(make([]byte, 65)), false},
	} {
		if err := ValidLabel(c.s); (err == nil) != c.ok || err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidLabel(%q) = %v, want ok=%v", c.s, err, c.ok)
		}
	}
}

func FuzzValidLabel(f *testing.F) {
	for _, s := range []string{"kettle", "laptop+printer", "a++b", "+", "x_1+y_2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidLabel(s) != nil {
			return
		}
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '+') {
				t.Fatalf("accepted %q with byte %q", s, c)
			}
		}
		if s[0] == '+' || s[len(s)-1] == '+' {
			t.Fatalf("accepted %q", s)
		}
	})
}

func BenchmarkValidLabel(b *testing.B) {
	for b.Loop() {
		ValidLabel("laptop+printer+3d_printer")
	}
}

func TestStorePersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "labels.json")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s, err := Open(path, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Add(Span{Device: "d", From: now.Add(-time.Hour), To: now.Add(-50 * time.Minute), Label: "kettle", User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(Span{Device: "e", From: now.Add(-2 * time.Hour), To: now.Add(-time.Hour), Label: "iron"}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Span{
		{Device: "d", From: now, To: now, Label: "x"},
		{Device: "d", From: now, To: now.Add(8 * 24 * time.Hour), Label: "x"},
		{Device: "", From: now, To: now.Add(time.Minute), Label: "x"},
		{Device: "d", From: now, To: now.Add(time.Minute), Label: "Bad Label"},
	} {
		if _, err := s.Add(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Add(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
	s2, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := s2.List(""); len(got) != 2 || got[0].Device != "e" || got[1].ID != a.ID || got[1].User != "alice" {
		t.Fatalf("reopened: %+v", got)
	}
	if got := s2.List("d"); len(got) != 1 {
		t.Errorf("List(d): %+v", got)
	}
	if err := s2.Delete(a.ID); err != nil {
		t.Fatal(err)
	}
	if err := s2.Delete(a.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	s3, _ := Open(path, nil)
	if len(s3.List("")) != 1 {
		t.Errorf("after delete: %+v", s3.List(""))
	}
}

func TestActiveModel(t *testing.T) {
	dir := t.TempDir()
	if _, ok := ActiveModel(dir); ok {
		t.Fatal("no ACTIVE file, yet a model")
	}
	os.WriteFile(filepath.Join(dir, "model-v2.json"), []byte("{}"), 0o644)
	for content, want := range map[string]bool{"model-v2.json\n": true, "model-v3.json": false, "../model-v2.json": false, "x.json": false} {
		os.WriteFile(filepath.Join(dir, ActiveFile), []byte(content), 0o644)
		if p, ok := ActiveModel(dir); ok != want || ok && p != filepath.Join(dir, "model-v2.json") {
			t.Errorf("ACTIVE %q: %q %v, want %v", content, p, ok, want)
		}
	}
}
