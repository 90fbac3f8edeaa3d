package webtest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"loadwatch/internal/alerts"
	"loadwatch/internal/web"

	"github.com/chromedp/chromedp"
)

// hookRecorder counts webhook deliveries.
type hookRecorder struct {
	mu sync.Mutex
	n  int
}

func (h *hookRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.n++
	h.mu.Unlock()
}

func (h *hookRecorder) count() int { h.mu.Lock(); defer h.mu.Unlock(); return h.n }

// chromiumPath is Debian's chromium; LOADWATCH_CHROMIUM overrides it.
func chromiumPath() string {
	if p := os.Getenv("LOADWATCH_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// artifactDir is where screenshots go: $LOADWATCH_ARTIFACTS when set
// (kept), else a temporary directory of the test.
func artifactDir(t *testing.T) string {
	if d := os.Getenv("LOADWATCH_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// consoleLog collects JavaScript errors: exceptions, console.error and
// browser log entries of level error (failed loads, CSP violations).
type consoleLog struct {
	mu   sync.Mutex
	errs []string
}

func (c *consoleLog) add(s string) {
	c.mu.Lock()
	c.errs = append(c.errs, s)
	c.mu.Unlock()
}

func (c *consoleLog) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.errs...)
}

// newBrowser starts a headless chromium with a fresh profile.
func newBrowser(t *testing.T, width, height int) (context.Context, *consoleLog) {
	t.Helper()
	if _, err := os.Stat(chromiumPath()); err != nil {
		t.Skipf("no chromium at %s (install Debian's chromium or set LOADWATCH_CHROMIUM)", chromiumPath())
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath()),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelC(); cancelA() })
	cl := &consoleLog{}
	// The first action starts the browser; it must not run under a timeout.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				cl.add(m.String() + " (" + m.URL + ")")
			}
		}
	}()
	return ctx, cl
}

func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(c, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d bytes)", p, len(buf))
}

// pollJS evaluates expr until it returns true.
func pollJS(t *testing.T, ctx context.Context, what, expr string, d time.Duration) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if _, err := chromedp.Run(c, chromedp.Poll[any](expr, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(d))); err != nil {
		dump, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("main") ? document.querySelector("main").innerText.slice(0, 1500) : ""`))
		t.Fatalf("waiting for %s (%s): %v\npage text:\n%s", what, expr, err, dump)
	}
}

func TestDashboardInBrowser(t *testing.T) {
	hook := &hookRecorder{}
	hs := httptest.NewServer(hook)
	defer hs.Close()
	disp, err := alerts.New(alerts.Config{Targets: []alerts.Target{{Name: "hook", URL: hs.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	e := startServer(t, envOpts{devices: []string{"kitchen", "office"}, idle: 98, backfill: 90 * time.Minute, labels: true, alerts: disp.TestHandler(web.User)})
	dir := artifactDir(t)
	ctx, cl := newBrowser(t, 1280, 900)

	// Reads are closed: the fleet page sends us to sign in first.
	run(t, ctx, "sign in",
		chromedp.Navigate(e.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS("#user")),
		chromedp.SendKeys(chromedp.CSS("#user"), "admin"),
		chromedp.SendKeys(chromedp.CSS("#password"), e.AdminPass),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#fleet tbody tr[data-device="kitchen"]`)),
	)
	pollJS(t, ctx, "100 devices listed", `document.querySelectorAll("#fleet tbody tr").length === 100`, 10*time.Second)
	pollJS(t, ctx, "kitchen online with a power and a class",
		`(() => { const r = document.querySelector('#fleet tr[data-device="kitchen"]'); return r && /online/.test(r.innerText) && /\d W/.test(r.innerText) && /(nothing|laptop|iron) \(\d+ %\)/.test(r.innerText); })()`, 15*time.Second)
	// The Link column: CRC errors and timeouts from the status, flagged
	// above 1 % of requests, every counter in the tooltip and for screen
	// readers.
	pollJS(t, ctx, "kitchen link counters",
		`(() => { const c = document.querySelector('#fleet tr[data-device="kitchen"] td:last-child'); return c && /5 CRC · 3 timeouts/.test(c.innerText) && c.querySelector(".link-warn") && /meter 1: 480 requests, 471 replies, 5 CRC errors, 3 timeouts, 0 exceptions, 1 short frames, 2 resyncs, 9 retries, 0 other; last reply 118 ms/.test(c.title) && c.querySelector(".sr-only").textContent === c.title + " "; })()`, 10*time.Second)
	screenshot(t, ctx, dir, "fleet.png")
	// How long the fleet page took from navigation to 100 rendered rows
	// (a figure for the docs; speed is never asserted).
	run(t, ctx, "reload fleet", chromedp.Navigate(e.URL+"/"))
	pollJS(t, ctx, "fleet rendered", `document.querySelectorAll("#fleet tbody tr").length === 100 && document.body.dataset.loadedMs`, 10*time.Second)
	if ms, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.dataset.loadedMs`)); err == nil {
		t.Logf("fleet page with 100 devices rendered %s ms after navigation", ms)
	}

	// The test alert goes through the dashboard's session and CSRF check.
	run(t, ctx, "test alert", chromedp.Click(chromedp.CSS("#test-alert")))
	pollJS(t, ctx, "test alert delivered", `/hook: delivered/.test(document.getElementById("alert-status").textContent)`, 10*time.Second)
	if hook.count() != 1 {
		t.Errorf("the webhook got %d test alerts, want 1", hook.count())
	}

	// Device page: live points over SSE, the class band, events.
	run(t, ctx, "open device page", chromedp.Navigate(e.URL+"/device/kitchen"), chromedp.WaitVisible(chromedp.CSS(`body[data-ready="1"]`)))
	run(t, ctx, "5 min range", chromedp.Click(chromedp.CSS(`button[data-range="300"]`)))
	pollJS(t, ctx, "live points on the power chart", `Number(document.getElementById("chart-power").dataset.live || 0) >= 5`, 15*time.Second)
	pollJS(t, ctx, "class band shows a class", `/(nothing|laptop|iron)/.test(document.getElementById("band").dataset.classes || "")`, 15*time.Second)
	pollJS(t, ctx, "grid surge listed with its evidence", `/grid_surge[\s\S]*230\.0 -> 246\.5/.test(document.getElementById("events").innerText)`, 15*time.Second)
	pollJS(t, ctx, "energy card", `/today/.test(document.getElementById("energy").innerText) && /EUR/.test(document.getElementById("energy").innerText)`, 15*time.Second)
	screenshot(t, ctx, dir, "device.png")

	// The relay button goes through the command path; the ack changes the page.
	run(t, ctx, "relay off", chromedp.Click(chromedp.CSS("#btn-relay-off")))
	pollJS(t, ctx, "relay shown open", `document.getElementById("now-relay").textContent === "open"`, 15*time.Second)
	pollJS(t, ctx, "ack shown", `/relay_off: acknowledged, relay open/.test(document.getElementById("cmd-status").textContent)`, 5*time.Second)
	if got := e.devices[0].relayState(); got != "open" {
		t.Errorf("simulated relay is %q after relay off, want open", got)
	}
	screenshot(t, ctx, dir, "relay-open.png")
	run(t, ctx, "relay on", chromedp.Click(chromedp.CSS("#btn-relay-on")))
	pollJS(t, ctx, "relay shown closed", `document.getElementById("now-relay").textContent === "closed"`, 15*time.Second)

	// Labelling a span and retraining produce a new model version.
	testLabelling(t, ctx, e, dir)

	// 24 h range is downsampled on the server: one point per pixel at most.
	run(t, ctx, "24 h range", chromedp.Click(chromedp.CSS(`button[data-range="86400"]`)))
	pollJS(t, ctx, "24 h range loaded", `/one point per \d+ s/.test(document.getElementById("range-info").textContent) && /Live/.test(document.getElementById("range-info").textContent)`, 10*time.Second)

	// The OTA page reads the server's OTA status through the dashboard.
	run(t, ctx, "OTA page", chromedp.Navigate(e.URL+"/ota"))
	pollJS(t, ctx, "OTA status shown", `/\d+ rollouts, \d+ devices reporting\./.test(document.getElementById("ota-msg").textContent)`, 10*time.Second)

	// Phone width.
	run(t, ctx, "phone width", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Navigate(e.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#fleet tbody tr[data-device="kitchen"]`)))
	overflow, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`))
	if err != nil {
		t.Fatal(err)
	}
	if overflow {
		t.Errorf("the fleet page scrolls sideways at phone width")
	}
	screenshot(t, ctx, dir, "fleet-phone.png")

	if errs := cl.all(); len(errs) > 0 {
		t.Errorf("JavaScript errors in the console:\n%s", strings.Join(errs, "\n"))
	}
	fmt.Fprintln(os.Stderr, "screenshots in", dir)
}
