package serialport

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ttyUSB9")
	_, err := Open(path)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path+" does not exist") {
		t.Fatalf("Open(missing) = %v", err)
	}
	if _, err := Open(""); err == nil {
		t.Fatal("empty path accepted")
	}
}

func TestOpenNotATerminal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if p, err := Open(path); err == nil {
		p.Close()
		t.Fatal("a regular file opened as a serial port")
	}
}
