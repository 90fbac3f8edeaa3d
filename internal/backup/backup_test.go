package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"loadwatch/internal/registry"
	"loadwatch/internal/store"
)

// liveData is a data directory as a running server holds it: the store
// and the registry open, the small files written.
type liveData struct {
	dir string
	st  *store.Store
	reg *registry.Registry
	tok map[string]string // device -> token
	api string            // admin API token
}

func newLiveData(t *testing.T) *liveData {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := OpenStore(dir, false, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg, err := registry.Open(ctx, registry.Path(dir), &registry.Options{PasswordIterations: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	if _, _, err := reg.EnsureAdmin(ctx, dir); err != nil {
		t.Fatal(err)
	}
	_, api, err := reg.CreateAPIToken(ctx, "first-start", registry.ScopeAdmin)
	if err != nil {
		t.Fatal(err)
	}
	l := &liveData{dir: dir, st: st, reg: reg, tok: map[string]string{}, api: api}
	for _, id := range []string{"kitchen", "garage"} {
		_, tok, err := reg.Add(ctx, registry.NewDevice{ID: id})
		if err != nil {
			t.Fatal(err)
		}
		l.tok[id] = tok
	}
	for name, body := range map[string]string{"model.json": `{"m":1}`, "api-token.json": `{"token":"x"}`, "ota/releases/1.0.0/manifest.json": "{}", "labels.json": `[]`, "models/ACTIVE": "model-v1.json\n", "models/model-v1.json": `{"m":2}`} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// checkRestored opens a restored data directory and checks that the
// samples and the devices are there.
func checkRestored(t *testing.T, dir string, want []stored, devices ...string) {
	t.Helper()
	ctx := context.Background()
	st, err := OpenStore(dir, true, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	out, es := export(t, st, ExportOptions{Device: "kitchen", From: t0, To: want[len(want)-1].r.Time})
	if es.Rows != len(want) {
		t.Fatalf("restored store: %d rows of kitchen, want %d\n%.300s", es.Rows, len(want), out)
	}
	res, err := st.Query(ctx, `sum(loadwatch_power_watts{device="kitchen"})`, want[len(want)-1].r.Time)
	if err != nil || len(res.Series) != 1 || res.Series[0].Points[0].V != float64(want[len(want)-1].r.Power) {
		t.Fatalf("restored store query: %+v %v", res, err)
	}
	reg, err := registry.Open(ctx, registry.Path(dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	for _, id := range devices {
		if _, err := reg.Get(ctx, id); err != nil {
			t.Errorf("restored registry: device %s: %v", id, err)
		}
	}
	for _, f := range []string{"model.json", "api-token.json", registry.AdminFile, "ota/releases/1.0.0/manifest.json", "labels.json", "models/ACTIVE", "models/model-v1.json"} {
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f))); err != nil {
			t.Errorf("restored %s: %v", f, err)
		}
	}
}

// TestBackupWhileServing takes a backup while the store and the registry
// are open and being written (as under `loadwatch serve`), restores it
// into an empty data directory and queries it.
func TestBackupWhileServing(t *testing.T) {
	ctx := context.Background()
	l := newLiveData(t)
	want := fill(t, l.st, "kitchen", 600, 8)

	// Writers keep going during the backup: new devices in the registry
	// and new samples of another device in the store.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var added atomic.Int64
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, _, err := l.reg.Add(ctx, registry.NewDevice{ID: fmt.Sprintf("new%d", i)}); err != nil {
				t.Error(err)
				return
			}
			added.Add(1)
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s := store.Sample{Metric: store.MetricPower, Labels: store.DeviceLabels("busy"), T: store.Millis(t0.Add(time.Duration(i) * time.Millisecond)), V: float64(i)}
			if err := l.st.Append(ctx, []store.Sample{s}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	out := filepath.Join(t.TempDir(), "backup")
	m, err := Create(ctx, l.dir, l.st, out)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !m.Store || !m.Registry || len(m.Files) != 7 {
		t.Errorf("manifest %+v", m)
	}
	t.Logf("%d devices were added during the backup", added.Load())

	dst := filepath.Join(t.TempDir(), "restored")
	if _, err := Restore(ctx, out, dst); err != nil {
		t.Fatal(err)
	}
	checkRestored(t, dst, want, "kitchen", "garage")

	// A restored device still authenticates with its token.
	reg, err := registry.Open(ctx, registry.Path(dst), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if p, err := reg.Authenticate(ctx, "kitchen", l.tok["kitchen"]); err != nil || p.ID != "kitchen" {
		t.Errorf("restored credential: %+v %v", p, err)
	}
	// The busy device's samples form a prefix without gaps: the snapshot
	// is consistent.
	st, err := OpenStore(dst, true, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	res, err := st.Query(ctx, `count_over_time(loadwatch_power_watts{device="busy"}[2h]) - 1 - max_over_time(loadwatch_power_watts{device="busy"}[2h])`, t0.Add(time.Hour))
	if err != nil || len(res.Series) != 1 || res.Series[0].Points[0].V != 0 {
		t.Errorf("busy series has gaps: %+v %v", res, err)
	}

	// Restore refuses a non-empty target and a non-backup.
	if _, err := Restore(ctx, out, dst); !errors.Is(err, ErrNotEmpty) {
		t.Errorf("restore into a full dir: %v", err)
	}
	if _, err := Restore(ctx, t.TempDir(), filepath.Join(t.TempDir(), "x")); !errors.Is(err, ErrNotBackup) {
		t.Errorf("restore of an empty dir: %v", err)
	}
	if _, err := Create(ctx, l.dir, l.st, out); !errors.Is(err, ErrNotEmpty) {
		t.Errorf("backup into a full dir: %v", err)
	}
}

// TestLiveBackupOverHTTP fetches a backup from the handler a running
// server mounts, as `loadwatch backup` does when the store is held.
func TestLiveBackupOverHTTP(t *testing.T) {
	ctx := context.Background()
	l := newLiveData(t)
	want := fill(t, l.st, "kitchen", 300, 9)
	if _, err := OpenStore(l.dir, true, store.Options{}); !errors.Is(err, ErrServing) {
		t.Fatalf("second open of a held store: %v", err)
	}
	srv := httptest.NewServer(Handler(l.dir, l.st, l.reg, nil))
	defer srv.Close()

	for _, tok := range []string{"", "lwt_wrong", l.tok["kitchen"]} {
		if _, err := Fetch(ctx, nil, srv.URL, tok); err == nil || !strings.Contains(err.Error(), "401") {
			t.Errorf("token %q: %v", tok, err)
		}
	}
	_, readTok, err := l.reg.CreateAPIToken(ctx, "reader", registry.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Fetch(ctx, nil, srv.URL, readTok); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("read-only token: %v", err)
	}
	resp, err := http.Get(srv.URL)
	if err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %v %v", resp, err)
	}

	body, err := Fetch(ctx, nil, srv.URL, l.api)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	out := filepath.Join(t.TempDir(), "backup")
	if err := ExtractTar(body, out); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "restored")
	if _, err := Restore(ctx, out, dst); err != nil {
		t.Fatal(err)
	}
	checkRestored(t, dst, want, "kitchen", "garage")
	// The handler cleaned up after itself.
	ents, _ := filepath.Glob(filepath.Join(l.dir, ".backup-*"))
	if len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
}

// TestTruncatedTarRefused cuts a backup stream at every entry boundary:
// the manifest comes last, so no cut restores.
func TestTruncatedTarRefused(t *testing.T) {
	ctx := context.Background()
	l := newLiveData(t)
	fill(t, l.st, "kitchen", 50, 10)
	out := filepath.Join(t.TempDir(), "backup")
	if _, err := Create(ctx, l.dir, l.st, out); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteTar(&b, out); err != nil {
		t.Fatal(err)
	}
	// Entry boundaries: re-read the stream and note the offsets.
	tr := tar.NewReader(bytes.NewReader(b.Bytes()))
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	if names[len(names)-1] != ManifestFile {
		t.Fatalf("last entry %q", names[len(names)-1])
	}
	for cut := 512; cut < b.Len()-1024; cut += b.Len() / 7 {
		cut -= cut % 512
		dir := filepath.Join(t.TempDir(), "x")
		err := ExtractTar(bytes.NewReader(b.Bytes()[:cut]), dir)
		if err == nil {
			_, err = Restore(ctx, dir, filepath.Join(t.TempDir(), "r"))
		}
		if err == nil {
			t.Errorf("a stream cut at %d of %d restored", cut, b.Len())
		}
	}
}

func TestExtractTarRefusesEscapes(t *testing.T) {
	for _, h := range []tar.Header{
		{Name: "../evil", Typeflag: tar.TypeReg, Size: 1, Mode: 0o600},
		{Name: "/etc/evil", Typeflag: tar.TypeReg, Size: 1, Mode: 0o600},
		{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"},
	} {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		tw.WriteHeader(&h)
		if h.Size > 0 {
			tw.Write([]byte("x"))
		}
		tw.Close()
		if err := ExtractTar(&b, filepath.Join(t.TempDir(), "x")); !errors.Is(err, ErrNotBackup) {
			t.Errorf("%s: %v", h.Name, err)
		}
	}
}

func FuzzExtractTar(f *testing.F) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o700})
	tw.WriteHeader(&tar.Header{Name: "d/f", Typeflag: tar.TypeReg, Size: 2, Mode: 0o600})
	tw.Write([]byte("hi"))
	tw.Close()
	f.Add(b.Bytes())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		dir := filepath.Join(root, "x")
		ExtractTar(bytes.NewReader(data), dir)
		// Nothing may land outside dir.
		ents, err := os.ReadDir(root)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.Name() != "x" {
				t.Fatalf("wrote %s outside the target", e.Name())
			}
		}
	})
}

func BenchmarkBackup(b *testing.B) {
	st := openStore(b)
	fill(b, st, "kitchen", 3600, 11)
	dir := b.TempDir()
	for i := 0; b.Loop(); i++ {
		if _, err := Create(context.Background(), dir, st, filepath.Join(b.TempDir(), fmt.Sprint(i))); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExtractTar(b *testing.B) {
	st := openStore(b)
	fill(b, st, "kitchen", 3600, 13)
	dir := filepath.Join(b.TempDir(), "b")
	if _, err := Create(context.Background(), b.TempDir(), st, dir); err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteTar(&buf, dir); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(buf.Len()))
	for i := 0; b.Loop(); i++ {
		if err := ExtractTar(bytes.NewReader(buf.Bytes()), filepath.Join(b.TempDir(), fmt.Sprint(i))); err != nil {
			b.Fatal(err)
		}
	}
}
