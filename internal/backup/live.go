package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"loadwatch/internal/registry"
)

// TokenChecker verifies API tokens (*registry.Registry implements it).
type TokenChecker interface {
	CheckAPIToken(ctx context.Context, secret string, need registry.Scope) (registry.APIToken, error)
}

// HandlerPath is where a server mounts Handler (POST).
const HandlerPath = "/api/v1/admin/backup"

// Handler serves a backup of a running server's data directory as a tar
// stream (POST HandlerPath, Authorization: Bearer <token with scope
// admin>): it writes the backup into a temporary directory inside
// dataDir (same file system, so the store snapshot hard-links its blocks),
// streams it and removes it. `loadwatch backup` uses it when the store is
// held by a running server.
func Handler(dataDir string, st Snapshotter, tokens TokenChecker, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
			return
		}
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || tokens == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="loadwatch"`)
			http.Error(w, "an API token with scope admin is required", http.StatusUnauthorized)
			return
		}
		if _, err := tokens.CheckAPIToken(r.Context(), strings.TrimSpace(tok), registry.ScopeAdmin); err != nil {
			code := http.StatusUnauthorized
			if errors.Is(err, registry.ErrForbidden) {
				code = http.StatusForbidden
			}
			http.Error(w, "backup needs an API token with scope admin", code)
			return
		}
		tmp, err := os.MkdirTemp(dataDir, ".backup-")
		if err != nil {
			log.Error("backup: temporary directory", "error", err)
			http.Error(w, "cannot create the backup", http.StatusInternalServerError)
			return
		}
		defer os.RemoveAll(tmp)
		out := filepath.Join(tmp, "b")
		if _, err := Create(r.Context(), dataDir, st, out); err != nil {
			log.Error("backup failed", "error", err)
			http.Error(w, "backup failed: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/x-tar")
		w.Header().Set("Content-Disposition", `attachment; filename="loadwatch-backup.tar"`)
		if err := WriteTar(w, out); err != nil {
			// The status is sent: the client sees a truncated tar, which
			// ExtractTar refuses.
			log.Error("backup: streaming failed", "error", err)
		}
	})
}

// Fetch asks a running server (base URL) for a backup with an admin API
// token and returns the tar stream; the caller closes it.
func Fetch(ctx context.Context, c *http.Client, base, token string) (io.ReadCloser, error) {
	if c == nil {
		c = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(base, "/")+HandlerPath, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		return nil, fmt.Errorf("backup: %s answered %s: %s", req.URL, resp.Status, strings.TrimSpace(string(b)))
	}
	return resp.Body, nil
}
