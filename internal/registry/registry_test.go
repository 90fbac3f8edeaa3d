package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

func open(t testing.TB, dir string) *Registry {
	t.Helper()
	r, err := Open(context.Background(), Path(dir), &Options{PasswordIterations: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestValidateID(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"kitchen", true},
		{"pi-01_A", true},
		{"a", true},
		{"", false},
		{"a/b", false},
		{"a+b", false},
		{"a#", false},
		{"$SYS", false},
		{"dev.1", false},
		{"sp ace", false},
		{"ünï", false},
		{AdminName, false},
		{string(make([]byte, 65)), false},
	} {
		err := ValidateID(tc.id)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateID(%q) error %v does not wrap ErrInvalid", tc.id, err)
		}
	}
}

func TestSplitSubDevice(t *testing.T) {
	for _, tc := range []struct {
		in   string
		id   string
		addr int
		ok   bool
	}{
		{"pi", "pi", 0, true},
		{"pi.1", "pi", 1, true},
		{"pi.247", "pi", 247, true},
		{"pi.248", "", 0, false},
		{"pi.0", "", 0, false},
		{"pi.01", "", 0, false},
		{"pi.x", "", 0, false},
		{"pi.", "", 0, false},
		{".1", "", 0, false},
		{"p/i.1", "", 0, false},
		{"pi.1.2", "", 0, false},
	} {
		id, addr, ok := SplitSubDevice(tc.in)
		if id != tc.id || addr != tc.addr || ok != tc.ok {
			t.Errorf("SplitSubDevice(%q) = %q,%d,%v want %q,%d,%v", tc.in, id, addr, ok, tc.id, tc.addr, tc.ok)
		}
	}
}

func TestAddErrors(t *testing.T) {
	ctx := context.Background()
	r := open(t, t.TempDir())
	if _, _, err := r.Add(ctx, NewDevice{ID: "taken", TasmotaTopic: "tasmota_1"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		nd   NewDevice
		want error
	}{
		{"duplicate", NewDevice{ID: "taken"}, ErrExists},
		{"bad id", NewDevice{ID: "a/b"}, ErrInvalid},
		{"sub-device id", NewDevice{ID: "taken.1"}, ErrInvalid},
		{"addr 0", NewDevice{ID: "x", Addrs: []int{0}}, ErrInvalid},
		{"addr 248", NewDevice{ID: "x", Addrs: []int{248}}, ErrInvalid},
		{"addr twice", NewDevice{ID: "x", Addrs: []int{3, 3}}, ErrInvalid},
		{"topic slash", NewDevice{ID: "x", TasmotaTopic: "a/b"}, ErrInvalid},
		{"topic wildcard", NewDevice{ID: "x", TasmotaTopic: "a+"}, ErrInvalid},
		{"topic taken", NewDevice{ID: "x", TasmotaTopic: "tasmota_1"}, ErrExists},
		{"bad tz", NewDevice{ID: "x", TasmotaTopic: "t2", TimeZone: "Mars/Olympus"}, ErrInvalid},
		{"tz without topic", NewDevice{ID: "x", TimeZone: "Europe/Berlin"}, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, tok, err := r.Add(ctx, tc.nd)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Add(%+v) = %v, want %v", tc.nd, err, tc.want)
			}
			if tok != "" {
				t.Fatal("a failed Add returned a token")
			}
		})
	}
}

func TestDeviceLifecycle(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r := open(t, dir)
	d, tok, err := r.Add(ctx, NewDevice{ID: "pi", Addrs: []int{2, 1}, TasmotaTopic: "tasmota_A1", TimeZone: "Europe/Berlin"})
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) < 40 || !slices.Equal(d.Addrs, []int{1, 2}) {
		t.Fatalf("token %q, addrs %v", tok, d.Addrs)
	}
	// Only the digest is stored.
	raw, err := os.ReadFile(Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	wal, _ := os.ReadFile(Path(dir) + "-wal")
	if bytes.Contains(raw, []byte(tok)) || bytes.Contains(wal, []byte(tok)) {
		t.Fatal("the token is stored in clear")
	}

	p, err := r.Authenticate(ctx, "pi", tok)
	if err != nil || p.ID != "pi" || p.Admin || p.TasmotaTopic != "tasmota_A1" || !slices.Equal(p.Addrs, []int{1, 2}) {
		t.Fatalf("Authenticate = %+v, %v", p, err)
	}
	for _, tc := range []struct{ user, tok string }{{"pi", tok + "x"}, {"pi", ""}, {"other", tok}, {AdminName, tok}} {
		if _, err := r.Authenticate(ctx, tc.user, tc.tok); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("Authenticate(%q, %q) = %v, want ErrBadCredentials", tc.user, tc.tok, err)
		}
	}
	if id, err := r.DeviceForToken(ctx, tok); err != nil || id != "pi" {
		t.Fatalf("DeviceForToken = %q, %v", id, err)
	}
	if _, err := r.DeviceForToken(ctx, "lwd_nope"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("DeviceForToken(unknown) = %v", err)
	}

	got, err := r.ByTasmotaTopic(ctx, "tasmota_A1")
	if err != nil || got.ID != "pi" || got.TimeZone != "Europe/Berlin" {
		t.Fatalf("ByTasmotaTopic = %+v, %v", got, err)
	}

	if id, loc, err := r.TasmotaDevice(ctx, "tasmota_A1"); err != nil || id != "pi" || loc.String() != "Europe/Berlin" {
		t.Fatalf("TasmotaDevice = %q, %v, %v", id, loc, err)
	}
	if _, _, err := r.TasmotaDevice(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("TasmotaDevice(unknown) = %v", err)
	}
	if err := r.SetFirmware(ctx, "pi", "1.2.3"); err != nil {
		t.Fatal(err)
	}
	seen := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	r.TouchLastSeen("pi", seen)
	r.TouchLastSeen("pi", seen.Add(-time.Hour)) // older: ignored
	if got, _ := r.Get(ctx, "pi"); !got.LastSeen.Equal(seen) {
		t.Fatalf("last seen before flush = %v", got.LastSeen)
	}
	if err := r.FlushLastSeen(ctx); err != nil {
		t.Fatal(err)
	}
	// A second handle (another process) sees the flushed values.
	r2 := open(t, dir)
	got, err = r2.Get(ctx, "pi")
	if err != nil || !got.LastSeen.Equal(seen) || got.Firmware != "1.2.3" {
		t.Fatalf("other handle: %+v, %v", got, err)
	}

	if err := r.Revoke(ctx, "pi"); err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Authenticate(ctx, "pi", tok); !errors.Is(err, ErrRevoked) || !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("revoked Authenticate = %v", err)
	}
	if _, err := r2.DeviceForToken(ctx, tok); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked DeviceForToken = %v", err)
	}
	tok2, err := r.Rotate(ctx, "pi")
	if err != nil || tok2 == tok {
		t.Fatalf("Rotate = %q, %v", tok2, err)
	}
	if _, err := r.Authenticate(ctx, "pi", tok); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("old token after rotate: %v", err)
	}
	if _, err := r.Authenticate(ctx, "pi", tok2); err != nil {
		t.Fatalf("new token after rotate: %v", err)
	}

	for _, err := range []error{
		r.Revoke(ctx, "ghost"),
		func() error { _, err := r.Rotate(ctx, "ghost"); return err }(),
		r.Delete(ctx, "ghost", false),
		r.SetFirmware(ctx, "ghost", "1"),
		func() error { _, err := r.Get(ctx, "ghost"); return err }(),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown id: %v, want ErrNotFound", err)
		}
	}

	if err := r.Delete(ctx, "pi", true); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Authenticate(ctx, "pi", tok2); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("deleted device authenticates: %v", err)
	}
	if l, _ := r.List(ctx); len(l) != 0 {
		t.Fatalf("List after delete = %v", l)
	}
}

type fakePurger struct {
	mu   sync.Mutex
	got  []string
	fail bool
}

func (f *fakePurger) PurgeDevice(_ context.Context, id string, before time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errors.New("store down")
	}
	f.got = append(f.got, fmt.Sprintf("%s<=%d", id, before.UnixMilli()))
	return nil
}

func TestPurgeQueue(t *testing.T) {
	ctx := context.Background()
	now := time.UnixMilli(1_800_000_000_000)
	r, err := Open(ctx, Path(t.TempDir()), &Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, id := range []string{"a", "b", "c"} {
		if _, _, err := r.Add(ctx, NewDevice{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Delete(ctx, "a", true); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(ctx, "b", false); err != nil { // no purge
		t.Fatal(err)
	}
	f := &fakePurger{fail: true}
	if n, err := r.DrainPurges(ctx, f); err == nil || n != 0 {
		t.Fatalf("failing purger: n=%d err=%v", n, err)
	}
	if p, _ := r.PendingPurges(ctx); len(p) != 1 || p[0].Device != "a" {
		t.Fatalf("pending after failure = %v", p)
	}
	f.fail = false
	if n, err := r.DrainPurges(ctx, f); err != nil || n != 1 {
		t.Fatalf("DrainPurges = %d, %v", n, err)
	}
	if want := []string{"a<=1800000000000"}; !slices.Equal(f.got, want) {
		t.Fatalf("purged %v, want %v", f.got, want)
	}
	if p, _ := r.PendingPurges(ctx); len(p) != 0 {
		t.Fatalf("pending after drain = %v", p)
	}
}

func TestAdmin(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r := open(t, dir)
	cred, created, err := r.EnsureAdmin(ctx, dir)
	if err != nil || !created {
		t.Fatalf("EnsureAdmin = %v, %v", created, err)
	}
	st, err := os.Stat(cred.File)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("credential file: %v %v", st, err)
	}
	user, pw, err := ReadAdminFile(cred.File)
	if err != nil || user != AdminName {
		t.Fatal(user, err)
	}
	p, err := r.Authenticate(ctx, user, pw)
	if err != nil || !p.Admin {
		t.Fatalf("admin Authenticate = %+v, %v", p, err)
	}
	if _, created, err := r.EnsureAdmin(ctx, dir); err != nil || created {
		t.Fatalf("second EnsureAdmin created=%v err=%v", created, err)
	}
	if _, pw2, _ := ReadAdminFile(cred.File); pw2 != pw {
		t.Fatal("second EnsureAdmin rewrote the credential")
	}
	if _, err := r.RotateAdmin(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Authenticate(ctx, user, pw); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("old admin password after rotate: %v", err)
	}
	_, pw3, _ := ReadAdminFile(cred.File)
	if _, err := r.Authenticate(ctx, user, pw3); err != nil {
		t.Fatalf("new admin password: %v", err)
	}
	if _, _, err := r.Add(ctx, NewDevice{ID: AdminName}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("device named admin: %v", err)
	}
	if matches, _ := filepath.Glob(filepath.Join(dir, ".admin-*")); len(matches) != 0 {
		t.Fatalf("temp files left: %v", matches)
	}
}

func TestUsers(t *testing.T) {
	ctx := context.Background()
	r := open(t, t.TempDir())
	if err := r.AddUser(ctx, "ada", "short"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("short password: %v", err)
	}
	if err := r.AddUser(ctx, "a b", "long enough pw"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad name: %v", err)
	}
	if err := r.AddUser(ctx, "ada", "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	if err := r.AddUser(ctx, "ada", "correct horse battery"); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate user: %v", err)
	}
	if err := r.CheckPassword(ctx, "ada", "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ u, p string }{{"ada", "correct horse batterx"}, {"ada", ""}, {"bob", "correct horse battery"}} {
		if err := r.CheckPassword(ctx, tc.u, tc.p); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("CheckPassword(%q,%q) = %v", tc.u, tc.p, err)
		}
	}
	if err := r.SetPassword(ctx, "ada", "a new long password"); err != nil {
		t.Fatal(err)
	}
	if err := r.CheckPassword(ctx, "ada", "correct horse battery"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("old password after change: %v", err)
	}
	if us, _ := r.ListUsers(ctx); len(us) != 1 || us[0].Name != "ada" {
		t.Fatalf("ListUsers = %v", us)
	}
	if err := r.DeleteUser(ctx, "ada"); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteUser(ctx, "ada"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
}

func TestCheckPasswordStoredForms(t *testing.T) {
	for _, s := range []string{"", "md5$x", "pbkdf2-sha256$0$AA$AA", "pbkdf2-sha256$10$!!$AA", "pbkdf2-sha256$10$AA$"} {
		if err := checkPassword(s, "whatever"); !errors.Is(err, ErrInvalid) {
			t.Errorf("checkPassword(%q) = %v, want ErrInvalid", s, err)
		}
	}
}

func TestAPITokens(t *testing.T) {
	ctx := context.Background()
	r := open(t, t.TempDir())
	if _, _, err := r.CreateAPIToken(ctx, "x"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no scope: %v", err)
	}
	if _, _, err := r.CreateAPIToken(ctx, "x", "root"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown scope: %v", err)
	}
	tk, secret, err := r.CreateAPIToken(ctx, "grafana", ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.CheckAPIToken(ctx, secret, ScopeRead); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CheckAPIToken(ctx, secret, ScopeWrite); !errors.Is(err, ErrForbidden) {
		t.Fatalf("missing scope: %v", err)
	}
	if _, err := r.CheckAPIToken(ctx, secret+"x", ScopeRead); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("wrong secret: %v", err)
	}
	_, adm, _ := r.CreateAPIToken(ctx, "ops", ScopeAdmin)
	if _, err := r.CheckAPIToken(ctx, adm, ScopeOTA); err != nil {
		t.Fatalf("admin scope implies ota: %v", err)
	}
	if err := r.RevokeAPIToken(ctx, tk.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CheckAPIToken(ctx, secret, ScopeRead); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked token: %v", err)
	}
	if ts, _ := r.ListAPITokens(ctx); len(ts) != 2 || ts[0].Revoked.IsZero() {
		t.Fatalf("ListAPITokens = %+v", ts)
	}
	if err := r.RevokeAPIToken(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
}

func TestDeviceJSON(t *testing.T) {
	d := Device{ID: "pi", Created: time.Unix(0, 0).UTC(), TokenCreated: time.Unix(0, 0).UTC()}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"pi","created":"1970-01-01T00:00:00Z","token_created":"1970-01-01T00:00:00Z"}`
	if string(b) != want {
		t.Fatalf("got %s\nwant %s", b, want)
	}
}

// TestConcurrentProcesses runs a "server" handle (authenticating, touching
// and flushing) and a "CLI" handle (adding, rotating, revoking) on one file
// at the same time, as `serve` and `device` do. Run it with -race.
func TestConcurrentProcesses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	srv, cli := open(t, dir), open(t, dir)
	const n = 20
	toks := make([]string, n)
	for i := range toks {
		var err error
		_, toks[i], err = cli.Add(ctx, NewDevice{ID: fmt.Sprintf("d%02d", i)})
		if err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 100; k++ {
				i := (k*7 + w) % (n / 2) // the first half is never changed by the CLI
				id := fmt.Sprintf("d%02d", i)
				if _, err := srv.Authenticate(ctx, id, toks[i]); err != nil {
					errc <- fmt.Errorf("authenticate %s: %w", id, err)
					return
				}
				srv.TouchLastSeen(id, time.UnixMilli(int64(1000+k)))
				if k%25 == 0 {
					if err := srv.FlushLastSeen(ctx); err != nil {
						errc <- err
						return
					}
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := n / 2; i < n; i++ {
			id := fmt.Sprintf("d%02d", i)
			if _, err := cli.Rotate(ctx, id); err != nil {
				errc <- err
				return
			}
			if err := cli.Revoke(ctx, id); err != nil {
				errc <- err
				return
			}
			if _, _, err := cli.Add(ctx, NewDevice{ID: fmt.Sprintf("new%02d", i)}); err != nil {
				errc <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if err := srv.FlushLastSeen(ctx); err != nil {
		t.Fatal(err)
	}
	l, err := cli.List(ctx)
	if err != nil || len(l) != n+n/2 {
		t.Fatalf("List = %d devices, %v", len(l), err)
	}
	for _, d := range l[:n/2] {
		if d.LastSeen.IsZero() {
			t.Errorf("%s: last seen not flushed", d.ID)
		}
	}
	for _, d := range l[n/2 : n] {
		if d.Revoked.IsZero() {
			t.Errorf("%s: not revoked", d.ID)
		}
	}
}

func TestRunFlushesOnExit(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	r := open(t, dir)
	if _, _, err := r.Add(ctx, NewDevice{ID: "pi"}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	r.TouchLastSeen("pi", time.UnixMilli(5000))
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	d, err := open(t, dir).Get(context.Background(), "pi")
	if err != nil || d.LastSeen.UnixMilli() != 5000 {
		t.Fatalf("after Run exit: %+v %v", d, err)
	}
}

func BenchmarkAuthenticate(b *testing.B) {
	ctx := context.Background()
	r := open(b, b.TempDir())
	_, tok, err := r.Add(ctx, NewDevice{ID: "pi", Addrs: []int{1, 2}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Authenticate(ctx, "pi", tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTouchLastSeen(b *testing.B) {
	r := open(b, b.TempDir())
	now := time.Now()
	for b.Loop() {
		r.TouchLastSeen("pi", now)
	}
}

func FuzzSplitSubDevice(f *testing.F) {
	for _, s := range []string{"pi", "pi.1", "pi.247", "pi.248", "a.b.c", "", ".", "x.007"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, addr, ok := SplitSubDevice(s)
		if !ok {
			if id != "" || addr != 0 {
				t.Fatalf("SplitSubDevice(%q) = %q, %d on failure", s, id, addr)
			}
			return
		}
		if ValidateID(id) != nil {
			t.Fatalf("SplitSubDevice(%q) returned invalid id %q", s, id)
		}
		rebuilt := id
		if addr != 0 {
			if addr < 1 || addr > 247 {
				t.Fatalf("SplitSubDevice(%q) address %d", s, addr)
			}
			rebuilt = fmt.Sprintf("%s.%d", id, addr)
		}
		if rebuilt != s {
			t.Fatalf("SplitSubDevice(%q) does not round-trip: %q", s, rebuilt)
		}
	})
}
