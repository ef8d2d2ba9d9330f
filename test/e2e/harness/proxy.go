package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"k8s.io/client-go/rest"
)

// APIProxy forwards to the API server, and holds the requests that match its hold rule
// until Release (then they go through) or Close (then they fail). Its Kubeconfig needs no
// credentials: the proxy adds the cluster's.
type APIProxy struct {
	// Kubeconfig is a kubeconfig whose server is the proxy.
	Kubeconfig string

	srv     *http.Server
	lis     net.Listener
	proxy   *httputil.ReverseProxy
	mu      sync.Mutex
	hold    func(*http.Request) bool
	release chan struct{}
	closed  chan struct{}
	held    int
	seen    int
	changed chan struct{}
	// execs are the client connections of exec streams in flight, so that
	// CutExecs can cut them as a dropped connection would.
	execs map[net.Conn]struct{}
}

type connKey struct{}

// IsExec matches an exec into a pod: a hook's stream.
func IsExec(r *http.Request) bool {
	return strings.HasSuffix(r.URL.Path, "/exec")
}

// CutExecs closes the connection of every exec stream in flight, as a
// network failure or an API server going away would, and returns how many
// it cut.
func (p *APIProxy) CutExecs() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for c := range p.execs {
		_ = c.Close()
		delete(p.execs, c)
		n++
	}
	return n
}

// StartAPIProxy starts a proxy to the cluster of cfg on a free loopback port and writes
// its kubeconfig into dir.
func StartAPIProxy(cfg *rest.Config, dir string) (*APIProxy, error) {
	target, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, fmt.Errorf("api proxy: %w", err)
	}
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("api proxy: %w", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("api proxy: %w", err)
	}
	p := &APIProxy{
		lis:     lis,
		release: make(chan struct{}),
		closed:  make(chan struct{}),
		changed: make(chan struct{}, 1),
		proxy: &httputil.ReverseProxy{
			Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(target) },
			Transport:     rt,
			FlushInterval: -1, // watches stream
			// A watch that ends when its client goes is no error worth printing.
			ErrorLog: log.New(io.Discard, "", 0),
		},
	}
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: proxy
  cluster: {server: "http://%s"}
users:
- name: proxy
  user: {}
contexts:
- name: proxy
  context: {cluster: proxy, user: proxy}
current-context: proxy
`, lis.Addr())
	p.Kubeconfig = filepath.Join(dir, "proxy.kubeconfig")
	if err := os.WriteFile(p.Kubeconfig, []byte(kubeconfig), 0o600); err != nil {
		lis.Close()
		return nil, fmt.Errorf("api proxy: %w", err)
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ConnContext: func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, c)
	}}
	go func() { _ = p.srv.Serve(lis) }()
	return p, nil
}

// IsSnapshotCreate matches the creation of a VolumeSnapshot: what the snapshotter does to
// cut one.
func IsSnapshotCreate(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/volumesnapshots")
}

// Hold makes requests that match rule wait (until Release or Close) from now on.
func (p *APIProxy) Hold(rule func(*http.Request) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hold = rule
	select {
	case <-p.release:
		p.release = make(chan struct{})
	default:
	}
}

// Release lets every held request through and stops holding.
func (p *APIProxy) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hold = nil
	select {
	case <-p.release:
	default:
		close(p.release)
	}
}

// Held returns how many requests are held now, and how many were held in all.
func (p *APIProxy) Held() (now, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held, p.seen
}

// Changed is signalled (coalesced) whenever a request starts or stops being held.
func (p *APIProxy) Changed() <-chan struct{} { return p.changed }

// Close fails every held request with 503 and stops the proxy.
func (p *APIProxy) Close() error {
	p.mu.Lock()
	select {
	case <-p.closed:
	default:
		close(p.closed)
	}
	p.mu.Unlock()
	err := p.srv.Close()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (p *APIProxy) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	hold, release := p.hold != nil && p.hold(r), p.release
	if hold {
		p.held++
		p.seen++
	}
	p.mu.Unlock()
	if hold {
		p.signal()
		var ok bool
		select {
		case <-release:
			ok = true
		case <-p.closed:
		case <-r.Context().Done():
		}
		p.mu.Lock()
		p.held--
		p.mu.Unlock()
		p.signal()
		if !ok {
			http.Error(w, "held by the e2e API proxy", http.StatusServiceUnavailable)
			return
		}
	}
	if c, ok := r.Context().Value(connKey{}).(net.Conn); ok && IsExec(r) {
		p.mu.Lock()
		if p.execs == nil {
			p.execs = map[net.Conn]struct{}{}
		}
		p.execs[c] = struct{}{}
		p.mu.Unlock()
		defer func() {
			p.mu.Lock()
			delete(p.execs, c)
			p.mu.Unlock()
		}()
	}
	p.proxy.ServeHTTP(w, r)
}

func (p *APIProxy) signal() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}
