package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/test/e2e/demo"
	"github.com/freezeframe/freezeframe/test/e2e/harness"
	"github.com/freezeframe/freezeframe/test/sandbox"
)

// The sandbox benchmarks (issue #8, parts 4 and 5): the real `freezeframe up`
// against the sandbox, real exec into pods backed by real redis-servers, real
// VolumeSnapshots cut by the sandbox's CSI driver. They report custom metrics
// (b.ReportMetric, milliseconds), which test/bench/cmd/report sets against the
// targets:
//
//	cd test/e2e && GOWORK=off go test -run '^$' -bench Sandbox -benchtime 20x .
//
// FREEZEFRAME_BENCH_PPROF=dir writes a CPU profile of the `freezeframe up`
// process for each benchmark run into dir (through its FREEZEFRAME_PPROF_ADDR
// listener).

// BenchmarkSandboxRedis backs up one Redis at a time, as the demo does:
// the demo's Blueprint (CLIENT PAUSE ... WRITE with the password from the
// Secret, CLIENT UNPAUSE), a Deployment with one PVC. frozen is Resumed.FrozenFor
// (pre-hook done -> post-hook start); cut is Snapshotted.CutDuration (create
// call -> creationTime seen); ready is that plus SnapshotReady.ReadyAfter
// (last cut -> readyToUse), i.e. create call -> ready; e2e is
// BackupRequested's time -> Resumed.ResumedAt.
func BenchmarkSandboxRedis(b *testing.B) {
	set := redisSet(b, "bench-redis", 1)
	up, client := benchUp(b)
	one := func() backupFigures {
		ids := set.backupAll(b, up, client)
		return ids[0]
	}
	for range 3 { // warm up: connections, caches, the snapshot class
		one()
	}
	var frozen, cut, beyond, ready, readyAfterCut, e2e []time.Duration
	stopProfile := profileUp(b, up)
	for b.Loop() {
		f := one()
		frozen, cut, beyond, e2e = append(frozen, f.frozen), append(cut, f.cut), append(beyond, f.frozen-f.cut), append(e2e, f.e2e)
		ready, readyAfterCut = append(ready, f.ready), append(readyAfterCut, f.readyAfterCut)
	}
	b.StopTimer()
	stopProfile()
	b.ReportMetric(millis(percentile(frozen, 50)), "frozen-ms")
	b.ReportMetric(millis(percentile(frozen, 99)), "frozen-p99-ms")
	b.ReportMetric(millis(percentile(cut, 50)), "cut-ms")
	b.ReportMetric(millis(percentile(beyond, 50)), "freeze-beyond-cut-ms")
	b.ReportMetric(millis(percentile(ready, 50)), "ready-ms")
	b.ReportMetric(millis(percentile(readyAfterCut, 50)), "ready-after-cut-ms")
	b.ReportMetric(millis(percentile(e2e, 50)), "e2e-ms")
	b.ReportMetric(millis(percentile(e2e, 99)), "e2e-p99-ms")
}

// BenchmarkSandboxFreeze backs up 1, then 50 Redis workloads at once (50
// concurrent requests) and waits until every one is resumed. For each backup
// the freeze beyond the storage's cut is Resumed.FrozenFor (pre-hook done ->
// post-hook start) minus Snapshotted.CutDuration; all-resumed is from the
// first request to the last Resumed.ResumedAt. ns/op is one round, with the
// waits for the freeze leases to go between rounds left out.
func BenchmarkSandboxFreeze(b *testing.B) {
	const most = 50
	set := redisSet(b, "bench-freeze", most)
	for _, n := range []int{1, most} {
		b.Run(fmt.Sprintf("workloads=%d", n), func(b *testing.B) {
			part := &workloadSet{namespace: set.namespace, names: set.names[:n]}
			up, client := benchUp(b)
			kv := leases(b, up)
			round := func() ([]backupFigures, time.Duration) {
				start := time.Now()
				figs := part.backupAll(b, up, client)
				var last time.Time
				for _, f := range figs {
					last = maxTime(last, f.resumedAt)
				}
				return figs, last.Sub(start)
			}
			round() // warm up
			waitReleased(b, kv)
			var beyond, frozen, cut []time.Duration
			var all []time.Duration
			stopProfile := profileUp(b, up)
			for b.Loop() {
				figs, took := round()
				b.StopTimer()
				for _, f := range figs {
					beyond, frozen, cut = append(beyond, f.frozen-f.cut), append(frozen, f.frozen), append(cut, f.cut)
				}
				all = append(all, took)
				waitReleased(b, kv)
				b.StartTimer()
			}
			b.StopTimer()
			stopProfile()
			b.ReportMetric(millis(percentile(beyond, 50)), "freeze-beyond-cut-p50-ms")
			b.ReportMetric(millis(percentile(beyond, 99)), "freeze-beyond-cut-p99-ms")
			b.ReportMetric(millis(percentile(beyond, 100)), "freeze-beyond-cut-max-ms")
			b.ReportMetric(millis(percentile(frozen, 50)), "frozen-p50-ms")
			b.ReportMetric(millis(percentile(frozen, 99)), "frozen-p99-ms")
			b.ReportMetric(millis(percentile(cut, 50)), "cut-p50-ms")
			b.ReportMetric(percentile(all, 50).Seconds(), "all-resumed-s")
		})
	}
}

// backupFigures is what one backup's events (and the snapshot watch) say.
type backupFigures struct {
	frozen, cut, e2e     time.Duration
	ready, readyAfterCut time.Duration
	resumedAt            time.Time
}

// workloadSet is n Redis Deployments in one namespace, bound to the demo's
// Blueprint.
type workloadSet struct {
	namespace string
	names     []string
}

var (
	setsMu sync.Mutex
	sets   = map[string]*workloadSet{}
)

// redisSet deploys n Redis workloads in namespace ns once per test binary
// (benchmarks run again for -count and for each sub-benchmark) and returns
// them.
func redisSet(b *testing.B, ns string, n int) *workloadSet {
	b.Helper()
	setsMu.Lock()
	defer setsMu.Unlock()
	if s, ok := sets[ns]; ok && len(s.names) >= n {
		return s
	}
	c := sandbox.Shared(b)
	installCRD(b)
	if err := c.EnsureNamespace(b.Context(), ns); err != nil {
		b.Fatal(err)
	}
	bp := demo.RedisBlueprint{Namespace: ns, Name: demo.Blueprint, Secret: "{{ .Deployment.Name }}-credentials", Key: "password"}
	if _, err := harness.Apply(b.Context(), c, bp.YAML()); err != nil {
		b.Fatal(err)
	}
	s := &workloadSet{namespace: ns, names: make([]string, n)}
	start := time.Now()
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		s.names[i] = fmt.Sprintf("redis-%02d", i)
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			_, errs[i] = c.StartRedis(ctx, sandbox.DatabaseOptions{Namespace: ns, Name: s.names[i],
				Annotations: map[string]string{"freezeframe.io/blueprint": demo.Blueprint}})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d redis workloads in %s ready in %s", n, ns, time.Since(start).Round(time.Millisecond))
	sets[ns] = s
	return s
}

// backupAll requests a backup of every workload of the set at once and
// waits until each is resumed and its snapshot ready (SnapshotReady); a
// backup that fails fails the benchmark.
func (s *workloadSet) backupAll(b *testing.B, up *upProcess, client *events.Client) []backupFigures {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), 2*time.Minute)
	defer cancel()
	// One subscription for every event from now on, so that 50 backups are
	// not 50 consumers.
	since := time.Now()
	type backup struct {
		evs  []events.Event
		done bool
		c    events.Completion
	}
	// The ids are chosen here, so that events of other backups (an earlier
	// round's late events) are told apart from the first one on.
	ids := make([]string, len(s.names))
	byID := map[string]*backup{}
	for i := range ids {
		ids[i] = events.NewBackupID()
		byID[ids[i]] = &backup{}
	}
	var mu sync.Mutex
	remaining := len(s.names)
	allDone := make(chan struct{})
	subCtx, stopSub := context.WithCancel(ctx)
	defer stopSub()
	var subWG sync.WaitGroup
	subWG.Go(func() {
		for ev, err := range client.Subscribe(subCtx, events.Filter{Namespace: s.namespace}, events.SubscribeOptions{Since: since.Add(-time.Millisecond)}) {
			if err != nil {
				if subCtx.Err() != nil {
					return
				}
				continue
			}
			mu.Lock()
			bk := byID[ev.BackupID()]
			if bk == nil {
				mu.Unlock()
				continue
			}
			bk.evs = append(bk.evs, ev)
			if bk.c.Observe(ev) && !bk.done { // resumed and ready, or failed
				bk.done = true
				remaining--
				if remaining == 0 {
					close(allDone)
				}
			}
			mu.Unlock()
		}
	})
	defer subWG.Wait()

	errs := make([]error, len(s.names))
	var reqs sync.WaitGroup
	for i, name := range s.names {
		reqs.Go(func() {
			_, errs[i] = client.RequestBackup(ctx, events.BackupRequested{
				BackupRef:   events.BackupRef{BackupID: ids[i], Workload: events.Workload{Cluster: up.Cluster(), Namespace: s.namespace, Kind: events.KindDeployment, Name: name}},
				RequestedBy: "bench/" + b.Name(),
			})
		})
	}
	reqs.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	select {
	case <-allDone:
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		b.Fatalf("%d of %d backups not finished: %v", remaining, len(s.names), ctx.Err())
	}
	stopSub()
	subWG.Wait()

	out := make([]backupFigures, 0, len(ids))
	for _, id := range ids {
		evs := byID[id].evs
		r, ok := harness.Payload[events.Resumed](evs)
		if !ok || !r.Succeeded {
			b.Fatalf("backup %s did not succeed:\n%s\n%s", id, harness.Timeline(evs), up.LogTail(40))
		}
		sn, _ := harness.Payload[events.Snapshotted](evs)
		rd, ok := harness.Payload[events.SnapshotReady](evs)
		if !ok {
			b.Fatalf("backup %s: no SnapshotReady:\n%s", id, harness.Timeline(evs))
		}
		f := backupFigures{frozen: r.FrozenFor.Std(), cut: sn.CutDuration.Std(), resumedAt: r.ResumedAt, e2e: r.ResumedAt.Sub(evs[0].Time())}
		f.readyAfterCut = rd.ReadyAfter.Std()
		f.ready = f.cut + f.readyAfterCut
		out = append(out, f)
	}
	return out
}

// upProcess is a `freezeframe up` started by benchUp.
type upProcess struct {
	*harness.Up
	pprofAddr string // with FREEZEFRAME_BENCH_PPROF
}

func benchUp(b *testing.B) (*upProcess, *events.Client) {
	b.Helper()
	c := sandbox.Shared(b)
	installCRD(b)
	dir := b.TempDir()
	var env []string
	p := &upProcess{}
	if os.Getenv("FREEZEFRAME_BENCH_PPROF") != "" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		p.pprofAddr = l.Addr().String()
		l.Close()
		env = append(env, "FREEZEFRAME_PPROF_ADDR="+p.pprofAddr)
	}
	up, err := harness.StartUp(b.Context(), harness.UpOptions{
		Bin: freezeframeBin(b), Kubeconfig: c.Kubeconfig,
		StateDir: filepath.Join(dir, "state"), LogPath: filepath.Join(dir, "freezeframe-up.log"),
		Env: env,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := up.Stop(); err != nil {
			b.Errorf("stop freezeframe up: %v", err)
		}
		if b.Failed() || os.Getenv("FREEZEFRAME_E2E_LOGS") != "" {
			b.Logf("freezeframe up log (%s), last lines:\n%s", up.LogPath(), up.LogTail(80))
		}
	})
	nc, client, err := up.Connect()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	p.Up = up
	return p, client
}

// leases opens the hooker's freeze-lease bucket on up's NATS.
func leases(b *testing.B, up *upProcess) jetstream.KeyValue {
	b.Helper()
	nc, _, err := up.ConnectAs(events.RoleAdmin)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	kv, err := js.KeyValue(b.Context(), events.FreezesBucket)
	if err != nil {
		b.Fatal(err)
	}
	return kv
}

// waitReleased waits until no freeze lease is held, so that the next round's
// requests do not find their workloads still held by the last round's.
func waitReleased(b *testing.B, kv jetstream.KeyValue) {
	b.Helper()
	eventstest.Eventually(b, 30*time.Second, "every freeze lease released", func() bool {
		keys, err := kv.ListKeys(b.Context())
		if err != nil {
			return false
		}
		n := 0
		for k := range keys.Keys() {
			if !strings.HasPrefix(k, "_") { // the hooker's own bookkeeping keys start with _
				n++
			}
		}
		return n == 0
	})
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(p/100*float64(len(s)) + 0.999999)
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// profileUp, with FREEZEFRAME_BENCH_PPROF=dir, takes a CPU profile of the
// `freezeframe up` process (served on FREEZEFRAME_PPROF_ADDR, see benchUp)
// while the benchmark loop runs, and writes it to dir/<benchmark>.cpu.pprof;
// stop ends it and waits for the file. A no-op without the variable.
func profileUp(b *testing.B, up *upProcess) (stop func()) {
	b.Helper()
	dir := os.Getenv("FREEZEFRAME_BENCH_PPROF")
	if dir == "" {
		return func() {}
	}
	// The profile endpoint takes its length up front: it covers the first
	// FREEZEFRAME_BENCH_PPROF_SECONDS (default 20) of the loop.
	secs := 20
	if v, err := strconv.Atoi(os.Getenv("FREEZEFRAME_BENCH_PPROF_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	path := filepath.Join(dir, strings.NewReplacer("/", "_", "=", "-").Replace(b.Name())+".cpu.pprof")
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", up.pprofAddr, secs))
		if err != nil {
			b.Logf("pprof: %v", err)
			return
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err == nil {
			err = os.WriteFile(path, data, 0o644)
		}
		if err != nil {
			b.Logf("pprof: %v", err)
			return
		}
		b.Logf("pprof: CPU profile of freezeframe up (%ds) in %s", secs, path)
	}()
	return func() { <-done }
}
