package main

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"loadwatch/internal/readingscsv"
)

func TestSimDatasetFile(t *testing.T) {
	out := filepath.Join(t.TempDir(), "sim.csv")
	cmd := simDatasetCmd{Rows: 2452, Seed: 1, Interval: time.Second, Device: "loadsim", Out: out}
	if err := cmd.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	first, err := bufio.NewReader(f).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if first != "timestamp,device,voltage,current,power,energy,frequency,pf,label\n" {
		t.Fatalf("header %q", first)
	}
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	rows, err := readingscsv.ReadAll(f)
	if err != nil {
		t.Fatalf("generated file does not parse: %v", err)
	}
	if len(rows) != 2452 {
		t.Fatalf("%d rows, want 2452", len(rows))
	}
	classes := map[string]int{}
	for _, r := range rows {
		classes[r.Label]++
		if r.Device != "loadsim" {
			t.Fatalf("device %q", r.Device)
		}
	}
	for _, want := range []string{"nothing", "laptop", "solder", "printer", "3d_printer",
		"laptop+solder", "3d_printer+laptop+printer+solder", "printer+solder"} {
		if classes[want] == 0 {
			t.Errorf("class %q missing: %v", want, classes)
		}
	}
	if len(classes) != 16 {
		t.Errorf("%d classes, want all 16 combinations: %v", len(classes), classes)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if line := strings.SplitN(string(raw), "\n", 3)[1]; !strings.HasPrefix(line, "2026-01-01T00:00:01.000Z,loadsim,") {
		t.Errorf("first row %q, want an RFC 3339 ms UTC time", line)
	}
}

func TestSimDatasetBadConfig(t *testing.T) {
	cmd := simDatasetCmd{Rows: 10, Interval: time.Millisecond, Device: "x", Out: filepath.Join(t.TempDir(), "x.csv")}
	if err := cmd.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "interval") {
		t.Errorf("error %v, want one about the interval", err)
	}
	cmd = simDatasetCmd{Rows: 10, Interval: time.Second, Device: "x", Out: filepath.Join(t.TempDir(), "no", "such", "dir.csv")}
	if err := cmd.Run(context.Background()); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}
