// Package web is loadwatch's embedded dashboard: static pages (HTML, CSS
// and vanilla JavaScript with uPlot vendored, no build step) served from an
// embed.FS, a sign-in with the admin credential or a dashboard user, and
// the few endpoints the pages need that the token-protected API cannot
// serve to a browser: reads forwarded to a read-only API handler, commands
// with their acknowledgement, relay states, energy and cost.
//
// Every change needs a signed-in user, a session cookie (HttpOnly,
// SameSite=Strict, Secure unless configured otherwise) and the session's
// CSRF token in the X-CSRF-Token header; cross-origin writes are refused
// on top of that by net/http's CrossOriginProtection. Reading is open or
// closed by Config.OpenReads.
package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"loadwatch/internal/api"
	"loadwatch/internal/telemetry"
)

//go:embed static
var staticFS embed.FS

// Static returns the dashboard's static files (rooted at "static").
func Static() fs.FS {
	sub, _ := fs.Sub(staticFS, "static")
	return sub
}

// Authenticator checks a dashboard sign-in. It returns an error wrapping
// ErrBadLogin for a wrong name or password.
type Authenticator interface {
	CheckLogin(ctx context.Context, user, password string) error
}

// ErrBadLogin is a refused sign-in.
var ErrBadLogin = errors.New("wrong user name or password")

// Commander sends commands to devices and waits for their acks
// (*api.Commands implements it).
type Commander interface {
	Send(device string, kind telemetry.CommandKind, args json.RawMessage) (api.CommandJSON, error)
	Wait(id string, d time.Duration, done <-chan struct{}) (api.CommandJSON, bool)
}

// Config configures the dashboard. Zero fields mean the documented
// defaults; a nil optional field leaves its feature out of the pages.
type Config struct {
	// Reads is a read-only API handler (an api.API built without token
	// checks and without Commands or OTA writes). The pages call it as
	// /ui/api/v1/... and the dashboard forwards GET requests to
	// /api/v1/... after its own session check. Required.
	Reads http.Handler
	// Login checks sign-ins (nil: nobody can sign in; every change is
	// refused).
	Login Authenticator
	// OpenReads lets anyone read the pages without signing in.
	OpenReads bool
	// Commands sends device commands (nil: the buttons are disabled).
	Commands Commander
	// Relays supplies relay states (nil: shown as unknown).
	Relays *RelayTracker
	// Energy answers energy and cost (nil: the energy card is hidden).
	Energy *EnergyService
	// Labels serves the labelling and retraining endpoints under
	// /ui/api/labels and /ui/api/retrain (labels.Service.Handler); GET is
	// a read, anything else a change.
	Labels http.Handler
	// Alerts serves POST /ui/api/alerts/test (alerts.Dispatcher.TestHandler).
	Alerts http.Handler
	// InsecureCookies leaves the Secure flag off the session cookie, for a
	// plain-HTTP dashboard on a LAN (browsers keep Secure cookies only over
	// HTTPS or on localhost). Prefer TLS.
	InsecureCookies bool
	// SessionTTL is how long a sign-in lasts. Default 12 h.
	SessionTTL time.Duration
	// MaxPoints bounds the points one forwarded query_range may return
	// per series: a finer step is raised to fit. Default 2000 (a wide
	// screen's width; the pages ask for one point per pixel).
	MaxPoints int
	// CommandWait is how long a command request waits for its ack.
	// Default 10 s.
	CommandWait time.Duration
	Now         func() time.Time
	Log         *slog.Logger
}

// Dashboard is the HTTP handler of the dashboard. Mount it as
// api.Config.Dashboard (it serves everything the API does not).
type Dashboard struct {
	cfg  Config
	mux  *http.ServeMux
	cop  *http.CrossOriginProtection
	mu   sync.Mutex
	sess map[string]*session
}

type session struct {
	user    string
	csrf    string
	expires time.Time
}

// CookieName is the session cookie's name.
const CookieName = "loadwatch_session"

// New returns the dashboard handler.
func New(cfg Config) (*Dashboard, error) {
	if cfg.Reads == nil {
		return nil, errors.New("web: no read API handler")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.MaxPoints <= 0 {
		cfg.MaxPoints = 2000
	}
	if cfg.CommandWait <= 0 {
		cfg.CommandWait = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	d := &Dashboard{cfg: cfg, mux: http.NewServeMux(), cop: http.NewCrossOriginProtection(), sess: map[string]*session{}}
	m := d.mux
	static := http.FileServerFS(Static())
	m.Handle("GET /static/", http.StripPrefix("/static/", cacheStatic(static)))
	m.HandleFunc("GET /{$}", d.page("fleet.html"))
	m.HandleFunc("GET /device/{id}", d.page("device.html"))
	m.HandleFunc("GET /ota", d.page("ota.html"))
	m.HandleFunc("GET /login", d.loginPage)
	m.HandleFunc("POST /login", d.login)
	m.HandleFunc("POST /logout", d.logout)
	m.HandleFunc("GET /ui/api/session", d.sessionInfo)
	m.Handle("GET /ui/api/v1/", d.read(http.HandlerFunc(d.forward)))
	m.Handle("GET /ui/api/relays", d.read(http.HandlerFunc(d.relays)))
	m.Handle("POST /ui/api/devices/{id}/commands", d.write(http.HandlerFunc(d.command)))
	if cfg.Energy != nil {
		m.Handle("GET /ui/api/devices/{id}/energy", d.read(http.HandlerFunc(cfg.Energy.serve)))
	}
	if cfg.Labels != nil {
		for _, p := range []string{"/ui/api/labels", "/ui/api/labels/", "/ui/api/retrain", "/ui/api/retrain/"} {
			m.Handle("GET "+p, d.read(cfg.Labels))
			m.Handle("POST "+p, d.write(cfg.Labels))
			m.Handle("DELETE "+p, d.write(cfg.Labels))
		}
	}
	if cfg.Alerts != nil {
		m.Handle("POST /ui/api/alerts/test", d.write(cfg.Alerts))
	}
	return d, nil
}

func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	d.mux.ServeHTTP(w, r)
}

func cacheStatic(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "vendor/") {
			w.Header().Set("Cache-Control", "public, max-age=86400")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		h.ServeHTTP(w, r)
	})
}

// page serves a page, or sends the visitor to sign in when reads are
// closed and they are not signed in.
func (d *Dashboard) page(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !d.cfg.OpenReads && d.current(r) == nil {
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		d.serveFile(w, r, name)
	}
}

func (d *Dashboard) serveFile(w http.ResponseWriter, r *http.Request, name string) {
	b, err := fs.ReadFile(Static(), name)
	if err != nil {
		http.Error(w, "page missing", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(b)
}

func (d *Dashboard) loginPage(w http.ResponseWriter, r *http.Request) {
	d.serveFile(w, r, "login.html")
}

func randomToken() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// current returns the request's live session, or nil.
func (d *Dashboard) current(r *http.Request) *session {
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" {
		return nil
	}
	now := d.cfg.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.sess[c.Value]
	if !ok {
		return nil
	}
	if now.After(s.expires) {
		delete(d.sess, c.Value)
		return nil
	}
	cp := *s
	return &cp
}

// safeNext keeps a redirect target on this site.
func safeNext(s string) string {
	if s == "" || !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") || strings.HasPrefix(s, "/\\") {
		return "/"
	}
	return s
}

type loginRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
	Next     string `json:"next"`
}

// login serves POST /login: a JSON body (from the page's script) or a
// form (without script). A cross-origin post is refused.
func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	if err := d.cop.Check(r); err != nil {
		writeError(w, http.StatusForbidden, "cross-origin sign-in refused")
		return
	}
	var req loginRequest
	isJSON := strings.HasPrefix(r.Header.Get("Content-Type"), "application/json")
	if isJSON {
		if err := json.NewDecoder(io.LimitReader(r.Body, 8<<10)).Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, "body must be {\"user\": ..., \"password\": ...}")
			return
		}
	} else {
		r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
		if err := r.ParseForm(); err != nil {
			writeError(w, http.StatusBadRequest, "bad form")
			return
		}
		req = loginRequest{User: r.PostForm.Get("user"), Password: r.PostForm.Get("password"), Next: r.PostForm.Get("next")}
	}
	if d.cfg.Login == nil {
		writeError(w, http.StatusServiceUnavailable, "sign-in is not configured on this server")
		return
	}
	if err := d.cfg.Login.CheckLogin(r.Context(), req.User, req.Password); err != nil {
		if !errors.Is(err, ErrBadLogin) {
			d.cfg.Log.Error("web: sign-in check failed", "error", err)
		} else {
			d.cfg.Log.Warn("web: refused sign-in", "user", req.User, "remote", r.RemoteAddr)
		}
		if isJSON {
			writeError(w, http.StatusUnauthorized, "wrong user name or password")
		} else {
			http.Redirect(w, r, "/login?error=1&next="+url.QueryEscape(safeNext(req.Next)), http.StatusSeeOther)
		}
		return
	}
	id := randomToken()
	s := &session{user: req.User, csrf: randomToken(), expires: d.cfg.Now().Add(d.cfg.SessionTTL)}
	d.mu.Lock()
	now := d.cfg.Now()
	for k, v := range d.sess { // drop expired sessions as we go
		if now.After(v.expires) {
			delete(d.sess, k)
		}
	}
	d.sess[id] = s
	d.mu.Unlock()
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: id, Path: "/", HttpOnly: true, Secure: !d.cfg.InsecureCookies,
		SameSite: http.SameSiteStrictMode, MaxAge: int(d.cfg.SessionTTL / time.Second),
	})
	if isJSON {
		writeJSON(w, http.StatusOK, map[string]string{"user": s.user, "csrf": s.csrf, "next": safeNext(req.Next)})
		return
	}
	http.Redirect(w, r, safeNext(req.Next), http.StatusSeeOther)
}

func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request) {
	s := d.current(r)
	if s == nil || !d.csrfOK(r, s) {
		writeError(w, http.StatusForbidden, "not signed in or bad CSRF token")
		return
	}
	if c, err := r.Cookie(CookieName); err == nil {
		d.mu.Lock()
		delete(d.sess, c.Value)
		d.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", HttpOnly: true, Secure: !d.cfg.InsecureCookies, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// SessionJSON is GET /ui/api/session.
type SessionJSON struct {
	User      string   `json:"user,omitempty"` // "" when not signed in
	CSRF      string   `json:"csrf,omitempty"`
	OpenReads bool     `json:"open_reads"`
	CanLogin  bool     `json:"can_login"`
	Features  []string `json:"features"` // commands, relays, energy, labels, alerts
}

func (d *Dashboard) sessionInfo(w http.ResponseWriter, r *http.Request) {
	out := SessionJSON{OpenReads: d.cfg.OpenReads, CanLogin: d.cfg.Login != nil, Features: []string{}}
	if s := d.current(r); s != nil {
		out.User, out.CSRF = s.user, s.csrf
	}
	for _, f := range []struct {
		on   bool
		name string
	}{{d.cfg.Commands != nil, "commands"}, {d.cfg.Relays != nil, "relays"}, {d.cfg.Energy != nil, "energy"},
		{d.cfg.Labels != nil, "labels"}, {d.cfg.Alerts != nil, "alerts"}} {
		if f.on {
			out.Features = append(out.Features, f.name)
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}

func (d *Dashboard) csrfOK(r *http.Request, s *session) bool {
	got := r.Header.Get("X-CSRF-Token")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1 && d.cop.Check(r) == nil
}

// read lets a request through when reads are open or it is signed in.
func (d *Dashboard) read(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !d.cfg.OpenReads && d.current(r) == nil {
			writeError(w, http.StatusUnauthorized, "sign in to read")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// write lets a request through only with a session and its CSRF token.
func (d *Dashboard) write(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := d.current(r)
		if s == nil {
			writeError(w, http.StatusUnauthorized, "sign in to change anything")
			return
		}
		if !d.csrfOK(r, s) {
			writeError(w, http.StatusForbidden, "missing or wrong CSRF token")
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, s.user)))
	})
}

type userKey struct{}

// User returns the signed-in user of a request that passed a write check
// (for handlers mounted through Config, e.g. to record who labelled).
func User(ctx context.Context) string {
	u, _ := ctx.Value(userKey{}).(string)
	return u
}

// forward passes GET /ui/api/v1/... to the read API as /api/v1/..., with
// the step of a range query raised so no series returns more than
// MaxPoints points.
func (d *Dashboard) forward(w http.ResponseWriter, r *http.Request) {
	r2 := r.Clone(r.Context())
	r2.URL.Path = strings.TrimPrefix(r.URL.Path, "/ui")
	r2.URL.RawPath = ""
	r2.RequestURI = ""
	r2.Header.Del("Authorization")
	if r2.URL.Path == "/api/v1/query_range" {
		q := r2.URL.Query()
		if step, ok := clampStep(q.Get("start"), q.Get("end"), q.Get("step"), d.cfg.MaxPoints); ok {
			q.Set("step", step)
			r2.URL.RawQuery = q.Encode()
		}
	}
	d.cfg.Reads.ServeHTTP(w, r2)
}

// clampStep returns a raised step (in seconds) when start, end and step
// would give more than maxPoints points; ok is false when the step can
// stay (or the parameters do not parse: the query API reports that).
func clampStep(start, end, step string, maxPoints int) (string, bool) {
	s, err1 := strconv.ParseFloat(start, 64)
	e, err2 := strconv.ParseFloat(end, 64)
	st, err3 := strconv.ParseFloat(step, 64)
	if err3 != nil {
		if dd, err := time.ParseDuration(step); err == nil {
			st, err3 = dd.Seconds(), nil
		}
	}
	if err1 != nil || err2 != nil || err3 != nil || st <= 0 || e <= s {
		return "", false
	}
	if (e-s)/st <= float64(maxPoints) {
		return "", false
	}
	need := (e - s) / float64(maxPoints)
	return strconv.FormatFloat(need, 'f', 3, 64), true
}

type commandRequest struct {
	Kind string          `json:"kind"`
	Args json.RawMessage `json:"args,omitempty"`
}

// command serves POST /ui/api/devices/{id}/commands: it sends the command
// and waits up to CommandWait for its ack (200 acknowledged, 202 pending).
func (d *Dashboard) command(w http.ResponseWriter, r *http.Request) {
	if d.cfg.Commands == nil {
		writeError(w, http.StatusServiceUnavailable, "commands are not available on this server")
		return
	}
	var req commandRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body must be {\"kind\": ..., \"args\": {...}}")
		return
	}
	dev := r.PathValue("id")
	cj, err := d.cfg.Commands.Send(dev, telemetry.CommandKind(req.Kind), req.Args)
	switch {
	case errors.Is(err, api.ErrBadCommand):
		writeError(w, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "command not sent: "+err.Error())
		return
	}
	d.cfg.Log.Info("web: command", "user", User(r.Context()), "device", dev, "kind", req.Kind, "id", cj.ID)
	cj, _ = d.cfg.Commands.Wait(cj.ID, d.cfg.CommandWait, r.Context().Done())
	if d.cfg.Relays != nil && cj.Status == api.CommandDone && cj.State != "" {
		d.cfg.Relays.set(dev, cj.State, d.cfg.Now())
	}
	code := http.StatusAccepted
	if cj.Status != api.CommandSent {
		code = http.StatusOK
	}
	writeJSON(w, code, cj)
}

func (d *Dashboard) relays(w http.ResponseWriter, r *http.Request) {
	out := map[string]RelayState{}
	if d.cfg.Relays != nil {
		out = d.cfg.Relays.All()
	}
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
