// Package otaserver serves signed OTA releases to devices: manifests per
// channel and platform chosen by the staged rollout, resumable and
// rate-limited binary downloads, device reports, and a JSON status API.
// Every device authenticates with its own bearer token through
// DeviceAuth, which the device registry implements.
package otaserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"loadwatch/internal/ota"
	"loadwatch/internal/ota/release"
)

// DeviceAuth maps a device's bearer token to its device id. Any error
// (unknown, revoked, expired) refuses the request with 401.
type DeviceAuth interface {
	DeviceForToken(ctx context.Context, token string) (id string, err error)
}

// Releases is the release store the handler serves from
// (*release.Store implements it).
type Releases interface {
	Get(channel, os, arch string) (release.Rollout, error)
	File(channel, os, arch, version, name string) (fileReadSeeker, error)
	RecordResult(channel, os, arch, deviceID, version string, ok bool) (release.Rollout, bool, error)
	Promote(channel, os, arch string, to float64, resume bool) (release.Rollout, error)
	Halt(channel, os, arch, reason string) (release.Rollout, error)
	List() ([]release.Listing, error)
}

// fileReadSeeker is what a stored file must offer for http.ServeContent.
type fileReadSeeker interface {
	io.ReadSeekCloser
	Name() string
}

// StoreReleases adapts a *release.Store to Releases.
type StoreReleases struct{ *release.Store }

// File implements Releases.
func (s StoreReleases) File(channel, os, arch, version, name string) (fileReadSeeker, error) {
	f, err := s.Store.File(channel, os, arch, version, name)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// Header a device sends with the version it runs.
const VersionHeader = "X-Loadwatch-Version"

// Options configure a Handler. Zero values mean the documented defaults.
type Options struct {
	Releases Releases
	Auth     DeviceAuth
	// Recorder gets every event; nil: an in-memory Log (its status is
	// served when Status is nil and the Recorder implements StatusSource).
	Recorder Recorder
	Status   StatusSource
	// RateLimit caps each download, bytes per second; 0: unlimited.
	RateLimit int64
	// MaxDownloads caps concurrent downloads (more get 503 and
	// Retry-After); 0: 16.
	MaxDownloads int
	Now          func() time.Time
	Logger       *slog.Logger
}

// Handler serves the device endpoints under /ota/v1/ and the status and
// operator endpoints under /api/v1/ota/.
type Handler struct {
	o   Options
	mux *http.ServeMux
	sem chan struct{}
}

// New returns a Handler.
func New(o Options) *Handler {
	if o.Recorder == nil {
		o.Recorder = NewLog(0)
	}
	if o.Status == nil {
		o.Status, _ = o.Recorder.(StatusSource)
	}
	if o.MaxDownloads <= 0 {
		o.MaxDownloads = 16
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{o: o, mux: http.NewServeMux(), sem: make(chan struct{}, o.MaxDownloads)}
	h.mux.HandleFunc("GET /ota/v1/{channel}/{platform}/{file}", h.device(h.manifest))
	h.mux.HandleFunc("GET /ota/v1/{channel}/{platform}/{version}/{file}", h.device(h.binary))
	h.mux.HandleFunc("POST /ota/v1/report", h.device(h.report))
	h.mux.HandleFunc("GET /api/v1/ota/status", h.status)
	h.mux.HandleFunc("POST /api/v1/ota/{channel}/{platform}/{action}", h.admin)
	return h
}

// ServeHTTP serves both the device and the API endpoints.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// DeviceHandler serves only /ota/v1/ (device-token authenticated).
func (h *Handler) DeviceHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/ota/v1/") {
			http.NotFound(w, r)
			return
		}
		h.mux.ServeHTTP(w, r)
	})
}

// APIHandler serves only /api/v1/ota/: status (GET) and promote/halt
// (POST). It does no authentication: mount it behind operator auth.
func (h *Handler) APIHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/api/v1/ota/") {
			http.NotFound(w, r)
			return
		}
		h.mux.ServeHTTP(w, r)
	})
}

type deviceFunc func(w http.ResponseWriter, r *http.Request, device string)

func (h *Handler) device(fn deviceFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		var dev string
		var err error
		if !ok || tok == "" {
			err = errors.New("no bearer token")
		} else {
			dev, err = h.o.Auth.DeviceForToken(r.Context(), tok)
			if err == nil && dev == "" {
				err = errors.New("empty device id")
			}
		}
		if err != nil {
			h.o.Logger.Info("ota: unauthorised", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
			w.Header().Set("WWW-Authenticate", `Bearer realm="loadwatch-ota"`)
			http.Error(w, "unauthorised", http.StatusUnauthorized)
			return
		}
		fn(w, r, dev)
	}
}

func (h *Handler) record(ctx context.Context, e Event) {
	e.Time = h.o.Now().UTC()
	if err := h.o.Recorder.Record(ctx, e); err != nil {
		h.o.Logger.Warn("ota: record event", "err", err)
	}
}

func splitPlatform(w http.ResponseWriter, r *http.Request) (channel, goos, arch string, ok bool) {
	channel = r.PathValue("channel")
	goos, arch, err := release.SplitPlatform(r.PathValue("platform"))
	if err == nil {
		err = ota.ValidName("channel", channel)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return "", "", "", false
	}
	return channel, goos, arch, true
}

func storeError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, release.ErrNotFound), errors.Is(err, release.ErrBadRequest):
		http.Error(w, err.Error(), http.StatusNotFound)
	default:
		http.Error(w, "internal error", http.StatusInternalServerError)
	}
}

// manifest serves update.json and update.json.minisig of the release
// this device is offered; 204 when it is offered none.
func (h *Handler) manifest(w http.ResponseWriter, r *http.Request, dev string) {
	file := r.PathValue("file")
	if file != "update.json" && file != "update.json.minisig" {
		http.NotFound(w, r)
		return
	}
	channel, goos, arch, ok := splitPlatform(w, r)
	if !ok {
		return
	}
	ro, err := h.o.Releases.Get(channel, goos, arch)
	if err != nil {
		storeError(w, err)
		return
	}
	offer := ro.Offer(dev)
	if file == "update.json" {
		h.record(r.Context(), Event{Device: dev, Kind: KindCheck, Channel: channel, Platform: goos + "-" + arch,
			Running: r.Header.Get(VersionHeader), Version: offer})
	}
	w.Header().Set("Cache-Control", "no-store")
	if offer == "" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	f, err := h.o.Releases.File(channel, goos, arch, offer, file)
	if err != nil {
		storeError(w, err)
		return
	}
	defer f.Close()
	if file == "update.json" {
		w.Header().Set("Content-Type", "application/json")
	} else {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}
	if _, err := io.Copy(w, f); err != nil {
		h.o.Logger.Debug("ota: send manifest", "err", err)
	}
}

// binary serves a release binary, only the one this device is offered,
// with Range support and the rate limit.
func (h *Handler) binary(w http.ResponseWriter, r *http.Request, dev string) {
	channel, goos, arch, ok := splitPlatform(w, r)
	if !ok {
		return
	}
	version, file := r.PathValue("version"), r.PathValue("file")
	if file != release.BinaryName {
		http.NotFound(w, r)
		return
	}
	ro, err := h.o.Releases.Get(channel, goos, arch)
	if err != nil {
		storeError(w, err)
		return
	}
	if offer := ro.Offer(dev); offer == "" || offer != version {
		http.Error(w, fmt.Sprintf("%s is not offered to this device", version), http.StatusForbidden)
		return
	}
	select {
	case h.sem <- struct{}{}:
		defer func() { <-h.sem }()
	default:
		w.Header().Set("Retry-After", "30")
		http.Error(w, "too many downloads", http.StatusServiceUnavailable)
		return
	}
	f, err := h.o.Releases.File(channel, goos, arch, version, file)
	if err != nil {
		storeError(w, err)
		return
	}
	defer f.Close()
	cw := &countingWriter{ResponseWriter: w, ctx: r.Context(), rate: h.o.RateLimit, start: time.Now()}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(cw, r, "", time.Time{}, f)
	h.record(r.Context(), Event{Device: dev, Kind: KindDownload, Channel: channel, Platform: goos + "-" + arch,
		Running: r.Header.Get(VersionHeader), Version: version, Offset: rangeStart(r.Header.Get("Range")),
		Bytes: cw.n, Detail: strconv.Itoa(cw.code())})
}

func rangeStart(h string) int64 {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		return 0
	}
	first, _, _ := strings.Cut(spec, "-")
	n, _ := strconv.ParseInt(first, 10, 64)
	return n
}

// countingWriter counts the body bytes and paces them to rate bytes/s.
type countingWriter struct {
	http.ResponseWriter
	ctx    context.Context
	rate   int64
	start  time.Time
	n      int64
	status int
}

func (c *countingWriter) WriteHeader(code int) {
	c.status = code
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) code() int {
	if c.status == 0 {
		return http.StatusOK
	}
	return c.status
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.rate <= 0 {
		n, err := c.ResponseWriter.Write(p)
		c.n += int64(n)
		return n, err
	}
	chunk := max(int(c.rate/20), 512) // about 50 ms of data per write
	written := 0
	for len(p) > 0 {
		k := min(chunk, len(p))
		n, err := c.ResponseWriter.Write(p[:k])
		written += n
		c.n += int64(n)
		if err != nil {
			return written, err
		}
		p = p[k:]
		due := c.start.Add(time.Duration(float64(c.n) / float64(c.rate) * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-c.ctx.Done():
				t.Stop()
				return written, c.ctx.Err()
			}
		}
	}
	return written, nil
}

// Report is what a device POSTs to /ota/v1/report.
type Report struct {
	Kind     Kind   `json:"kind"` // apply, result or refused
	Channel  string `json:"channel"`
	OS       string `json:"os"`
	Arch     string `json:"arch"`
	Running  string `json:"running"`
	Version  string `json:"version"`
	OK       bool   `json:"ok"`
	Detail   string `json:"detail,omitempty"`
	Attempts int    `json:"attempts,omitempty"`
}

// ReportReply answers a report.
type ReportReply struct {
	Halted bool `json:"halted"` // this report halted the rollout
}

func (h *Handler) report(w http.ResponseWriter, r *http.Request, dev string) {
	var rep Report
	dec := json.NewDecoder(io.LimitReader(r.Body, 16<<10))
	if err := dec.Decode(&rep); err != nil {
		http.Error(w, "bad report: "+err.Error(), http.StatusBadRequest)
		return
	}
	switch rep.Kind {
	case KindApply, KindResult, KindRefused:
	default:
		http.Error(w, fmt.Sprintf("bad report kind %q", rep.Kind), http.StatusBadRequest)
		return
	}
	if len(rep.Detail) > 1024 {
		rep.Detail = rep.Detail[:1024]
	}
	ok := rep.OK
	h.record(r.Context(), Event{Device: dev, Kind: rep.Kind, Channel: rep.Channel, Platform: rep.OS + "-" + rep.Arch,
		Running: rep.Running, Version: rep.Version, OK: &ok, Detail: rep.Detail})
	var reply ReportReply
	if rep.Kind == KindResult && rep.Version != "" {
		ro, halted, err := h.o.Releases.RecordResult(rep.Channel, rep.OS, rep.Arch, dev, rep.Version, rep.OK)
		switch {
		case errors.Is(err, release.ErrBadRequest):
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		case err != nil:
			storeError(w, err)
			return
		}
		if halted {
			h.o.Logger.Warn("ota: rollout halted", "channel", ro.Channel, "platform", ro.Platform(), "reason", ro.HaltReason)
		}
		reply.Halted = halted
	}
	writeJSON(w, http.StatusOK, reply)
}

// StatusReply is GET /api/v1/ota/status.
type StatusReply struct {
	Rollouts []release.Listing `json:"rollouts"`
	Devices  []DeviceStatus    `json:"devices"`
	Events   []Event           `json:"events"`
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	var rep StatusReply
	var err error
	if rep.Rollouts, err = h.o.Releases.List(); err != nil {
		storeError(w, err)
		return
	}
	for i := range rep.Rollouts { // the binary signatures are noise here
		for j := range rep.Rollouts[i].Releases {
			rep.Rollouts[i].Releases[j].Signature = ""
		}
	}
	if h.o.Status != nil {
		limit, _ := strconv.Atoi(r.URL.Query().Get("events"))
		if limit <= 0 {
			limit = 100
		}
		if rep.Devices, err = h.o.Status.Status(r.Context()); err == nil {
			rep.Events, err = h.o.Status.Events(r.Context(), r.URL.Query().Get("device"), limit)
		}
		if err != nil {
			storeError(w, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, rep)
}

// admin: POST /api/v1/ota/{channel}/{platform}/promote?to=50[&resume=1]
// and .../halt?reason=...
func (h *Handler) admin(w http.ResponseWriter, r *http.Request) {
	channel, goos, arch, ok := splitPlatform(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	var ro release.Rollout
	var err error
	switch r.PathValue("action") {
	case "promote":
		to, perr := strconv.ParseFloat(strings.TrimSuffix(q.Get("to"), "%"), 64)
		if q.Get("to") != "" && perr != nil {
			http.Error(w, "bad to", http.StatusBadRequest)
			return
		}
		ro, err = h.o.Releases.Promote(channel, goos, arch, to, q.Get("resume") != "")
	case "halt":
		ro, err = h.o.Releases.Halt(channel, goos, arch, cmp(q.Get("reason"), "halted through the API"))
	default:
		http.NotFound(w, r)
		return
	}
	switch {
	case errors.Is(err, release.ErrNoRollout), errors.Is(err, release.ErrHalted), errors.Is(err, release.ErrBadRequest):
		http.Error(w, err.Error(), http.StatusConflict)
		return
	case err != nil:
		storeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ro)
}

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
