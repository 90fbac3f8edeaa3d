package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"loadwatch/internal/ingest"
)

// filter builds an event filter from ?device= and ?type= (comma separated).
func filter(r *http.Request) func(ingest.Event) bool {
	dev := r.URL.Query().Get("device")
	var types []string
	if t := r.URL.Query().Get("type"); t != "" {
		types = strings.Split(t, ",")
	}
	return func(e ingest.Event) bool {
		if dev != "" && e.Device != dev {
			return false
		}
		if len(types) == 0 {
			return true
		}
		for _, t := range types {
			if string(e.Type) == t {
				return true
			}
		}
		return false
	}
}

// events serves GET /api/v1/events: the recent anomaly, status, ack and
// rejection events (not readings), oldest first.
func (a *API) events(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Bus == nil {
		writeJSON(w, http.StatusOK, []ingest.Event{})
		return
	}
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "limit must be a positive integer")
			return
		}
		limit = n
	}
	out := a.cfg.Bus.Recent(filter(r), limit)
	if out == nil {
		out = []ingest.Event{}
	}
	writeJSON(w, http.StatusOK, out)
}

// SSEKeepAlive is how often the stream sends a comment when idle.
const SSEKeepAlive = 15 * time.Second

// stream serves GET /api/v1/events/stream as Server-Sent Events: every
// event (readings too), "event: <type>" and "data: <json>". Filters as for
// /api/v1/events. A client too slow to keep up loses events.
func (a *API) stream(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok || a.cfg.Bus == nil {
		writeError(w, http.StatusNotImplemented, "streaming unsupported")
		return
	}
	sub := a.cfg.Bus.Subscribe(1024, filter(r))
	defer sub.Close()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": loadwatch events\n\n")
	fl.Flush()
	tick := time.NewTicker(SSEKeepAlive)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			fl.Flush()
		case e, ok := <-sub.C:
			if !ok {
				return
			}
			b, err := json.Marshal(e)
			if err != nil {
				continue
			}
			if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", e.Type, b); err != nil {
				return
			}
			fl.Flush()
		}
	}
}
