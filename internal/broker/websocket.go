package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// wsListener serves MQTT over WebSocket (subprotocol "mqtt", any path).
// It replaces mochi's WebSocket listener, which binds only when it starts
// serving: a bind error would be logged instead of returned, and port 0
// could not be reported.
type wsListener struct {
	id   string
	addr string
	tls  *tls.Config

	mu     sync.Mutex
	ln     net.Listener
	srv    *http.Server
	log    *slog.Logger
	closed bool
}

func newWSListener(id, addr string, tlsConf *tls.Config) *wsListener {
	return &wsListener{id: id, addr: addr, tls: tlsConf}
}

func (l *wsListener) ID() string { return l.id }

func (l *wsListener) Protocol() string {
	if l.tls != nil {
		return "wss"
	}
	return "ws"
}

func (l *wsListener) Address() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.addr
}

func (l *wsListener) Init(log *slog.Logger) error {
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return err
	}
	if l.tls != nil {
		ln = tls.NewListener(ln, l.tls)
	}
	l.mu.Lock()
	l.ln, l.log = ln, log
	l.mu.Unlock()
	return nil
}

func (l *wsListener) Serve(establish listeners.EstablishFn) {
	up := &websocket.Upgrader{
		Subprotocols: []string{"mqtt"},
		// Browsers send an Origin; MQTT credentials, not cookies,
		// authenticate, so any origin may connect.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return // Upgrade already answered with an HTTP error
			}
			defer c.Close()
			if err := establish(l.id, newWSConn(c)); err != nil {
				l.log.Debug("websocket client ended", "error", err)
			}
		}),
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.srv = srv
	ln := l.ln
	l.mu.Unlock()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		l.log.Error("websocket listener stopped", "error", err)
	}
}

func (l *wsListener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	l.closed = true
	srv, ln := l.srv, l.ln
	l.mu.Unlock()
	closeClients(l.id)
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	} else if ln != nil {
		_ = ln.Close()
	}
}

// wsConn is a net.Conn over a WebSocket: MQTT bytes travel in binary
// messages, and a packet may span messages or share one. Reads must come
// from one goroutine (as MQTT clients and mochi do).
type wsConn struct {
	net.Conn
	c  *websocket.Conn
	r  io.Reader  // the current message, nil between messages
	wm sync.Mutex // net.Conn allows concurrent writes; gorilla does not
}

func newWSConn(c *websocket.Conn) *wsConn { return &wsConn{Conn: c.NetConn(), c: c} }

func (w *wsConn) Read(p []byte) (int, error) {
	for {
		if w.r == nil {
			op, r, err := w.c.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, errors.New("websocket: MQTT needs binary messages")
			}
			w.r = r
		}
		n, err := w.r.Read(p)
		if errors.Is(err, io.EOF) {
			w.r = nil
			if n == 0 {
				continue // empty or finished message: read the next one
			}
			err = nil
		}
		return n, err
	}
}

func (w *wsConn) Write(p []byte) (int, error) {
	w.wm.Lock()
	defer w.wm.Unlock()
	if err := w.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *wsConn) Close() error { return w.c.Close() }
