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

// The sandbox benchmarks (issue #8, parts 4 and 5; issue 16, items 1 and 4): the real `freezeframe up`
// against the sandbox, real exec into pods backed by real redis-servers, real
// VolumeSnapshots cut by the sandbox's CSI driver. They report custom metrics
// (b.ReportMetric, milliseconds), which test/bench/cmd/report sets against the
// targets:
//
//	cd test/e2e && GOWORK=off go test -run '^$' -bench Sandbox -benchtime 20x .
//
// FREEZEFRAME_BENCH_PPROF=dir writes a CPU profile of the `freezeframe up`
// process for each benchmark run into dir (through its FREEZEFRAME_PPROF_ADDR
// listener). FREEZEFRAME_BENCH_ADMISSION=off runs the hooker without freeze
// admission (HOOKER_ADMISSION_DISABLED), to compare.

// BenchmarkSandboxRedis backs up one Redis at a time, as the demo does:
// the demo's Blueprint (CLIENT PAUSE ... WRITE with the password from the
// Secret, CLIENT UNPAUSE), a Deployment with one PVC. frozen is Resumed.FrozenFor
// (pre-hook done -> post-hook start); cut is Snapshotted.CutDuration (create
// call -> creationTime seen); ready is that plus SnapshotReady.ReadyAfter
// (last cut -> readyToUse), i.e. create call -> ready; e2e is
// BackupRequested's time -> Resumed.ResumedAt. writer-pause is what the
// application feels: a writer against the Redis (see startWriters) goes this
// long without an acknowledgement during the backup; writer-beyond-cut is
// that minus the backup's cut.
func BenchmarkSandboxRedis(b *testing.B) {
	set := redisSet(b, "bench-redis", 1)
	up, client := benchUp(b)
	for range 3 { // warm up: connections, caches, the snapshot class
		set.backupAll(b, up, client)
	}
	var frozen, cut, beyond, ready, readyAfterCut, e2e, pause, pauseBeyond []time.Duration
	stopProfile := profileUp(b, up)
	var spacing time.Duration
	for b.Loop() {
		r := set.measuredRound(b, up, client)
		f := r.figs[0]
		frozen, cut, beyond, e2e = append(frozen, f.frozen), append(cut, f.cut), append(beyond, f.frozen-f.cut), append(e2e, f.e2e)
		ready, readyAfterCut = append(ready, f.ready), append(readyAfterCut, f.readyAfterCut)
		pause, pauseBeyond = append(pause, r.pauses...), append(pauseBeyond, r.pausesBeyondCut...)
		spacing = r.writerSpacing
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
	b.ReportMetric(millis(percentile(pause, 50)), "writer-pause-ms")
	b.ReportMetric(millis(percentile(pause, 99)), "writer-pause-p99-ms")
	b.ReportMetric(millis(percentile(pauseBeyond, 50)), "writer-beyond-cut-ms")
	b.ReportMetric(millis(percentile(pauseBeyond, 99)), "writer-beyond-cut-p99-ms")
	b.Logf("one Redis backup at a time, %d rounds, a writer on it (one write every %s): writer pause p50 %s p99 %s, cut p50 %s, writer beyond cut p50 %s p99 %s, frozen (ours) p50 %s",
		len(pause), spacing, ms(percentile(pause, 50)), ms(percentile(pause, 99)), ms(percentile(cut, 50)),
		ms(percentile(pauseBeyond, 50)), ms(percentile(pauseBeyond, 99)), ms(percentile(frozen, 50)))
}

// freezeSizes are the numbers of workloads BenchmarkSandboxFreeze backs up at
// once. Up to redisWorkloads they are all real Redis servers; beyond, the
// rest are cheap-hook workloads (see stubSet) and the Redis ones the sample
// the writers check.
var freezeSizes = []int{1, 50, 500}

const redisWorkloads = 50

// BenchmarkSandboxFreeze backs up 1, 50, then 500 workloads at once (that
// many concurrent requests) and waits until every one is resumed and its
// snapshot ready. Per backup: the freeze beyond the storage's cut is
// Resumed.FrozenFor (pre-hook done -> post-hook start) minus
// Snapshotted.CutDuration; the writer's pause (longest time without an
// acknowledgement, a writer on every real Redis) and that minus the cut.
// Per round: all-resumed, from the first request to the last
// Resumed.ResumedAt; the CPU time of the `freezeframe up` process and the
// rise of its resident set, per backup. Once per size, outside the rounds:
// storage-bound, the same claims snapshotted by the storage alone (see
// storageBound). ns/op is one round, with the writers' start and stop and the
// waits for the freeze leases to go between rounds left out.
func BenchmarkSandboxFreeze(b *testing.B) {
	const ns = "bench-freeze"
	set := redisSet(b, ns, redisWorkloads)
	for _, n := range freezeSizes {
		b.Run(fmt.Sprintf("workloads=%d", n), func(b *testing.B) {
			part := &workloadSet{namespace: set.namespace, names: set.names[:min(n, redisWorkloads)], dbs: set.dbs}
			if n > redisWorkloads {
				part.names = append(slices.Clone(part.names), stubSet(b, ns, n-redisWorkloads)...)
			}
			up, client := benchUp(b)
			kv := leases(b, up)
			// Warm up (connections, caches, both blueprints) on at most 100 of
			// them: a whole warm-up round of 500 would cost 1.5 min on 2 cores.
			warm := &workloadSet{namespace: part.namespace, names: part.names[:min(n, redisWorkloads)]}
			if n > redisWorkloads {
				warm.names = append(slices.Clone(warm.names), part.names[redisWorkloads:min(n, 2*redisWorkloads)]...)
			}
			warm.backupAll(b, up, client)
			waitReleased(b, kv, n)
			var beyond, frozen, cut, pause, pauseBeyond, all, cpu []time.Duration
			var rssRise int64
			var spacing time.Duration
			stopProfile := profileUp(b, up)
			for b.Loop() {
				r := part.measuredRound(b, up, client)
				b.StopTimer()
				for _, f := range r.figs {
					beyond, frozen, cut = append(beyond, f.frozen-f.cut), append(frozen, f.frozen), append(cut, f.cut)
				}
				pause, pauseBeyond = append(pause, r.pauses...), append(pauseBeyond, r.pausesBeyondCut...)
				all, cpu = append(all, r.took), append(cpu, r.cpu)
				rssRise = max(rssRise, r.rssRiseKiB)
				spacing = r.writerSpacing
				waitReleased(b, kv, n)
				b.StartTimer()
			}
			b.StopTimer()
			stopProfile()
			runs := 3
			if n > redisWorkloads {
				runs = 1 // 500 snapshots made and deleted again take a while
			}
			var bounds []time.Duration
			for range runs {
				bounds = append(bounds, storageBound(b, part.namespace, part.claims()))
			}
			bound := percentile(bounds, 50)
			allResumed := percentile(all, 50)
			b.ReportMetric(millis(percentile(beyond, 50)), "freeze-beyond-cut-p50-ms")
			b.ReportMetric(millis(percentile(beyond, 99)), "freeze-beyond-cut-p99-ms")
			b.ReportMetric(millis(percentile(beyond, 100)), "freeze-beyond-cut-max-ms")
			b.ReportMetric(millis(percentile(frozen, 50)), "frozen-p50-ms")
			b.ReportMetric(millis(percentile(frozen, 99)), "frozen-p99-ms")
			b.ReportMetric(millis(percentile(cut, 50)), "cut-p50-ms")
			b.ReportMetric(allResumed.Seconds(), "all-resumed-s")
			b.ReportMetric(millis(percentile(pause, 50)), "writer-pause-p50-ms")
			b.ReportMetric(millis(percentile(pause, 99)), "writer-pause-p99-ms")
			b.ReportMetric(millis(percentile(pauseBeyond, 50)), "writer-beyond-cut-p50-ms")
			b.ReportMetric(millis(percentile(pauseBeyond, 99)), "writer-beyond-cut-p99-ms")
			b.ReportMetric(bound.Seconds(), "storage-bound-s")
			b.ReportMetric(allResumed.Seconds()/bound.Seconds(), "batch-vs-storage")
			// CPU: the median round's; memory: the largest rise of any round,
			// as what a deployment must have room for.
			b.ReportMetric(millis(percentile(cpu, 50))/float64(n), "cpu-ms-per-backup")
			b.ReportMetric(float64(rssRise)/float64(n), "rss-kib-per-backup-in-flight")
			b.Logf("%d workloads at once (%d with a real Redis and a writer, one write every %s), %d rounds: "+
				"writer pause p50 %s p99 %s, beyond the cut p50 %s p99 %s; cut p50 %s; frozen (ours) p50 %s; "+
				"all resumed %s, storage alone %s (%d runs), ratio %.2f; freezeframe up: %s CPU and %d KiB peak RSS rise per backup",
				n, len(part.writerDatabases()), spacing, len(all),
				ms(percentile(pause, 50)), ms(percentile(pause, 99)), ms(percentile(pauseBeyond, 50)), ms(percentile(pauseBeyond, 99)),
				ms(percentile(cut, 50)), ms(percentile(frozen, 50)),
				allResumed.Round(time.Millisecond), bound.Round(time.Millisecond), runs, allResumed.Seconds()/bound.Seconds(),
				(percentile(cpu, 50) / time.Duration(n)).Round(10*time.Microsecond), rssRise/int64(n))
		})
	}
}

// backupFigures is what one backup's events (and the snapshot watch) say.
type backupFigures struct {
	frozen, cut, e2e     time.Duration
	ready, readyAfterCut time.Duration
	resumedAt            time.Time
}

// workloadSet is workloads in one namespace: Redis Deployments bound to the
// demo's Blueprint, and cheap-hook ones (stubSet). Each has one claim,
// <name>-data.
type workloadSet struct {
	namespace string
	names     []string
	// dbs holds the real database behind a workload, by name; a workload
	// without one has cheap hooks and no writer.
	dbs map[string]*sandbox.Database
}

func (s *workloadSet) claims() []string {
	out := make([]string, len(s.names))
	for i, n := range s.names {
		out[i] = n + "-data"
	}
	return out
}

// writerDatabases returns the real databases of the set, in the order of its
// names.
func (s *workloadSet) writerDatabases() []*sandbox.Database {
	var out []*sandbox.Database
	for _, n := range s.names {
		if db := s.dbs[n]; db != nil {
			out = append(out, db)
		}
	}
	return out
}

// roundFigures is one measured round: every backup's figures (in the order of
// the set's names), the writers' pauses and those minus the cut of the same
// workload's backup, and what `freezeframe up` spent.
type roundFigures struct {
	figs                    []backupFigures
	pauses, pausesBeyondCut []time.Duration
	writerSpacing           time.Duration
	took                    time.Duration // first request -> last Resumed.ResumedAt
	cpu                     time.Duration
	rssRiseKiB              int64
}

// measuredRound backs up the whole set at once, as backupAll, with a writer on
// every real database and `freezeframe up`'s CPU and memory watched. The
// benchmark timer is stopped while the writers start and stop.
func (s *workloadSet) measuredRound(b *testing.B, up *upProcess, client *events.Client) roundFigures {
	b.Helper()
	b.StopTimer()
	dbs := s.writerDatabases()
	writers := startWriters(b, dbs)
	usage, err := watchUsage(up.Pid())
	if err != nil {
		writers.stopAll()
		b.Fatal(err)
	}
	b.StartTimer()
	start := time.Now()
	figs := s.backupAll(b, up, client)
	b.StopTimer()
	var end time.Time
	for _, f := range figs {
		end = maxTime(end, f.resumedAt)
	}
	r := roundFigures{figs: figs, writerSpacing: writers.spacing, took: end.Sub(start)}
	if r.cpu, r.rssRiseKiB, err = usage.end(); err != nil {
		writers.stopAll()
		b.Fatal(err)
	}
	r.pauses = writers.pauses(b, start, end)
	cuts := map[string]time.Duration{}
	for i, name := range s.names {
		cuts[name] = figs[i].cut
	}
	for i, db := range dbs {
		r.pausesBeyondCut = append(r.pausesBeyondCut, r.pauses[i]-cuts[db.Workload])
	}
	b.StartTimer()
	return r
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
	s := &workloadSet{namespace: ns, names: make([]string, n), dbs: map[string]*sandbox.Database{}}
	start := time.Now()
	errs := make([]error, n)
	dbs := make([]*sandbox.Database, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		s.names[i] = fmt.Sprintf("redis-%02d", i)
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			dbs[i], errs[i] = c.StartRedis(ctx, sandbox.DatabaseOptions{Namespace: ns, Name: s.names[i],
				Annotations: map[string]string{"freezeframe.io/blueprint": demo.Blueprint}})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	for i, db := range dbs {
		s.dbs[s.names[i]] = db
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
	// 500 backups at once take minutes on 2 cores.
	ctx, cancel := context.WithTimeout(b.Context(), 2*time.Minute+time.Duration(len(s.names))*500*time.Millisecond)
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
	if os.Getenv("FREEZEFRAME_BENCH_ADMISSION") == "off" {
		// For the comparison in docs/performance.md: every request
		// freezes at once, as before freeze admission.
		env = append(env, "HOOKER_ADMISSION_DISABLED=true")
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
func waitReleased(b *testing.B, kv jetstream.KeyValue, workloads int) {
	b.Helper()
	eventstest.Eventually(b, 30*time.Second+time.Duration(workloads)*100*time.Millisecond, "every freeze lease released", func() bool {
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

// ms prints d in milliseconds with one decimal, for the benchmarks' log lines.
func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", millis(d)) }

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
