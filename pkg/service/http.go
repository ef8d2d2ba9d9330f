package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
)

// Probe is one service's readiness. A service calls Ready once it serves
// (its consumers or subscriptions exist); from then on it is ready while its
// NATS connection is up. Methods on a nil Probe do nothing.
type Probe struct {
	name  string
	mu    sync.Mutex
	ready bool
	nc    *nats.Conn
}

// Ready marks the service ready for as long as nc is connected (nil nc: no
// connection to check).
func (p *Probe) Ready(nc *nats.Conn) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ready, p.nc = true, nc
}

// NotReady marks the service not ready, e.g. while it stops.
func (p *Probe) NotReady() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ready = false
}

func (p *Probe) check() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case !p.ready:
		return fmt.Errorf("%s: not serving yet", p.name)
	case p.nc != nil && !p.nc.IsConnected():
		return fmt.Errorf("%s: NATS %s", p.name, p.nc.Status())
	}
	return nil
}

// Health gathers the probes of the services one process runs (one, or four
// under `freezeframe up`): the process is ready when every one is.
type Health struct {
	mu     sync.Mutex
	probes map[string]*Probe
}

// NewHealth returns a Health with no probes.
func NewHealth() *Health { return &Health{probes: map[string]*Probe{}} }

// Probe returns the probe of the named service, made on first use.
func (h *Health) Probe(name string) *Probe {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, ok := h.probes[name]
	if !ok {
		p = &Probe{name: name}
		h.probes[name] = p
	}
	return p
}

// Ready returns why the process is not ready, or nil.
func (h *Health) Ready() error {
	h.mu.Lock()
	names := make([]string, 0, len(h.probes))
	for n := range h.probes {
		names = append(names, n)
	}
	h.mu.Unlock()
	sort.Strings(names)
	var errs []error
	for _, n := range names {
		errs = append(errs, h.Probe(n).check())
	}
	return errors.Join(errs...)
}

// Endpoint serves /healthz (the process runs), /readyz (every probe is
// ready) and /metrics (Prometheus exposition).
type Endpoint struct {
	ln  net.Listener
	srv *http.Server
	log *slog.Logger
}

// Listen binds addr (":8080"; "127.0.0.1:0" picks a free port) at once, so
// that a taken port fails the start, not a later scrape.
func Listen(addr string, health *Health, metrics http.Handler, log *slog.Logger) (*Endpoint, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http endpoint: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := health.Ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	return &Endpoint{ln: ln, log: log, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}, nil
}

// Addr is the address the endpoint listens on.
func (e *Endpoint) Addr() string { return e.ln.Addr().String() }

// Serve answers requests until ctx ends.
func (e *Endpoint) Serve(ctx context.Context) error {
	e.log.InfoContext(ctx, "serving /healthz, /readyz and /metrics", "addr", e.Addr())
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = e.srv.Shutdown(sctx)
	})
	defer stop()
	if err := e.srv.Serve(e.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http endpoint: %w", err)
	}
	return nil
}

func consumerAttr(durable string) attribute.KeyValue { return attribute.String("consumer", durable) }
