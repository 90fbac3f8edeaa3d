package otaagent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Auth is how one kind of request authenticates. Bearer wins over Basic;
// both empty sends no credentials.
type Auth struct {
	Bearer         string
	User, Password string // HTTP Basic
}

func (a Auth) apply(r *http.Request) {
	switch {
	case a.Bearer != "":
		r.Header.Set("Authorization", "Bearer "+a.Bearer)
	case a.User != "" || a.Password != "":
		r.SetBasicAuth(a.User, a.Password)
	}
}

// Source is where releases come from: the loadwatch server (see
// ServerSource) or any HTTPS location such as a private GitHub repository.
type Source struct {
	ManifestURL  string // update.json
	SignatureURL string // "": ManifestURL + ".minisig"
	ManifestAuth Auth   // for the manifest and its signature
	BinaryAuth   Auth   // for the binary
	// Header is added to manifest and signature requests, BinaryHeader to
	// binary requests (GitHub needs Accept headers; see docs/OTA.md).
	Header, BinaryHeader http.Header
	// ReportURL receives results as JSON POSTs with ManifestAuth; "" (a
	// plain HTTPS source): results are only logged on the device.
	ReportURL string
	Client    *http.Client // nil: a client with no overall timeout (ctx bounds it)
}

// ServerSource is the loadwatch server: the device's own bearer token for
// everything, and results reported to /ota/v1/report.
func ServerSource(base, channel, goos, arch, token string) Source {
	base = strings.TrimRight(base, "/")
	a := Auth{Bearer: token}
	return Source{
		ManifestURL:  fmt.Sprintf("%s/ota/v1/%s/%s-%s/update.json", base, channel, goos, arch),
		ManifestAuth: a, BinaryAuth: a,
		ReportURL: base + "/ota/v1/report",
	}
}

// HTTPError is a non-success HTTP status.
type HTTPError struct {
	URL    string
	Status int
	Body   string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("ota: GET %s: HTTP %d %s", redact(e.URL), e.Status, strings.TrimSpace(e.Body))
}

// ErrUnauthorized is matched (errors.Is) by an HTTPError with status 401.
var ErrUnauthorized = errors.New("ota: unauthorised (wrong or revoked token)")

// Is lets errors.Is(err, ErrUnauthorized) match a 401.
func (e *HTTPError) Is(target error) bool {
	return target == ErrUnauthorized && e.Status == http.StatusUnauthorized
}

func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	return p.Redacted()
}

func (s Source) client() *http.Client {
	if s.Client != nil {
		return s.Client
	}
	return http.DefaultClient
}

// sigURL is SignatureURL, or the manifest's URL with ".minisig" appended
// to its path (a query such as ?ref=main stays where it is).
func (s Source) sigURL() string {
	if s.SignatureURL != "" {
		return s.SignatureURL
	}
	u, err := url.Parse(s.ManifestURL)
	if err != nil {
		return s.ManifestURL + ".minisig"
	}
	u.Path += ".minisig"
	if u.RawPath != "" {
		u.RawPath += ".minisig"
	}
	return u.String()
}

// binaryURL resolves the manifest's url against the manifest's URL.
func (s Source) binaryURL(ref string) (string, error) {
	base, err := url.Parse(s.ManifestURL)
	if err != nil {
		return "", fmt.Errorf("ota: manifest url: %w", err)
	}
	r, err := url.Parse(ref)
	if err != nil {
		return "", fmt.Errorf("ota: binary url %q: %w", ref, err)
	}
	u := base.ResolveReference(r)
	if u.Scheme != "https" && u.Scheme != "http" {
		return "", fmt.Errorf("ota: binary url %q: scheme %q", ref, u.Scheme)
	}
	return u.String(), nil
}

// errNoRelease: the server offers this device no release (204).
var errNoRelease = errors.New("ota: no release offered")

// fetchSmall GETs a small document (at most 1 MiB).
func (s Source) fetchSmall(ctx context.Context, u string, version string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("ota: %w", err)
	}
	for k, vs := range s.Header {
		req.Header[k] = vs
	}
	req.Header.Set("X-Loadwatch-Version", version)
	s.ManifestAuth.apply(req)
	resp, err := s.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("ota: GET %s: %w", redact(u), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		return nil, errNoRelease
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return nil, &HTTPError{URL: u, Status: resp.StatusCode, Body: string(b)}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20+1))
	if err != nil {
		return nil, fmt.Errorf("ota: GET %s: %w", redact(u), err)
	}
	if len(b) > 1<<20 {
		return nil, fmt.Errorf("ota: GET %s: larger than 1 MiB", redact(u))
	}
	return b, nil
}

// post sends a JSON report.
func (s Source) post(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.ReportURL, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("ota: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	s.ManifestAuth.apply(req)
	resp, err := s.client().Do(req)
	if err != nil {
		return fmt.Errorf("ota: report: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return &HTTPError{URL: s.ReportURL, Status: resp.StatusCode}
	}
	return nil
}
