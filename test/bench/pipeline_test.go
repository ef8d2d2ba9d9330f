package bench_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/test/bench/pipeline"
	"github.com/freezeframe/freezeframe/test/bench/stats"
)

var (
	freezeSamples = flag.String("freeze-samples", "", "append every freeze-overhead sample (ns, one a line) to this file, for cmd/report's plot")
	serviceLogs   = flag.Bool("service-logs", false, "print the services' warnings to stderr")
)

func options(n int) pipeline.Options {
	o := pipeline.Options{Workloads: n}
	if *serviceLogs {
		o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return o
}

// BenchmarkOrchestration runs one backup at a time through the real
// services with instant hooks and snapshots. e2e is BackupRequested (its
// event time) to Resumed (received by an observer); freeze-overhead is
// (post-hook start - pre-hook end) - (snapshot cut - create), both seen by
// the stand-ins. Backups rotate over a few workloads so that a workload's
// freeze lease, released just after Resumed, never delays the next request.
func BenchmarkOrchestration(b *testing.B) {
	rig := pipeline.Start(b, options(8))
	ctx := context.Background()
	one := func(i int) (e2e, overhead, frozen, cut time.Duration) {
		w := rig.Workloads[i%len(rig.Workloads)]
		if _, err := rig.Backup(ctx, w); err != nil {
			b.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		o, err := rig.Next(wctx)
		if err != nil {
			b.Fatal(err)
		}
		if !o.Succeeded {
			b.Fatalf("backup %s of %s ended with %s", o.BackupID, o.Workload, o.Kind)
		}
		overhead, frozen, cut, err = rig.FreezeOverhead(w.Namespace)
		if err != nil {
			b.Fatal(err)
		}
		return o.Ended.Sub(o.Requested), overhead, frozen, cut
	}
	for i := range 20 { // warm up: consumers, lease keys, informer
		one(i)
	}
	var e2e, over, frozen, cut []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		e, o, f, c := one(i)
		e2e, over, frozen, cut = append(e2e, e), append(over, o), append(frozen, f), append(cut, c)
	}
	b.StopTimer()
	b.ReportMetric(stats.Millis(stats.Percentile(e2e, 50)), "e2e-p50-ms")
	b.ReportMetric(stats.Millis(stats.Percentile(e2e, 99)), "e2e-p99-ms")
	b.ReportMetric(stats.Millis(stats.Percentile(over, 50)), "freeze-overhead-p50-ms")
	b.ReportMetric(stats.Millis(stats.Percentile(over, 99)), "freeze-overhead-p99-ms")
	b.ReportMetric(stats.Millis(stats.Percentile(over, 100)), "freeze-overhead-max-ms")
	b.ReportMetric(stats.Millis(stats.Percentile(frozen, 50)), "frozen-p50-ms")
	b.ReportMetric(stats.Millis(stats.Percentile(cut, 50)), "cut-p50-ms")
	if *freezeSamples != "" {
		if err := stats.AppendFile(*freezeSamples, over); err != nil {
			b.Fatal(err)
		}
	}
}

var heapProfile = flag.String("heap-profile", "", "write a heap profile, to this path with .<workloads> appended, while the throughput benchmark holds every backup in flight")

func writeHeapProfile(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		b.Fatal(err)
	}
}

// processCPU is the CPU time this process has used so far, user and
// system (getrusage). The benchmark's process holds every part of the
// pipeline: the services, the embedded NATS server, the stand-ins and the
// benchmark's own requests and observer, so a round's share of it, per
// backup, bounds freezeframe's own CPU per backup from above.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// liveInFlight is the heap live while n backups are all in flight at once:
// every workload frozen and its snapshot created, the cuts held by the
// stand-in; after a GC, above the heap live before they were requested,
// per backup. It counts what the stand-in cluster stores (each
// VolumeSnapshot in the fake clientset) and the in-process NATS server's
// share, so it bounds the services' own state from above; the fakes' logs
// of every API call, which no real cluster keeps, are emptied first.
func liveInFlight(b *testing.B, rig *pipeline.Rig, n int) float64 {
	b.Helper()
	ctx := context.Background()
	rig.ForgetCalls()
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	rig.Cuts.Hold()
	reqs := requestAll(ctx, rig)
	waitHeld(b, rig, reqs, n, roundTimeout(n))
	rig.ForgetCalls()
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	live := float64(int64(ms.HeapAlloc)-int64(base)) / float64(n)
	if *heapProfile != "" {
		writeHeapProfile(b, fmt.Sprintf("%s.%d", *heapProfile, n))
	}
	rig.Cuts.Release()
	wctx, cancel := context.WithTimeout(ctx, roundTimeout(n))
	defer cancel()
	for range n {
		if _, err := rig.Next(wctx); err != nil {
			b.Fatal(err)
		}
	}
	reqs.Wait(b)
	eventstest.Eventually(b, settleTimeout(n), "every lease released", func() bool { return rig.Released(ctx) })
	return live
}

// requests are backup requests in flight, one goroutine each.
type requests struct {
	wg     sync.WaitGroup
	mu     sync.Mutex
	n      int
	failed int
	first  error
}

// requestsUnanswered bounds the backup requests waiting for the
// scheduler's answer at once. The scheduler answers 64 at a time; 10,000
// unanswered requests at once made each wait longer than a client's attempt
// (3 s), so that all of them were sent again, and again, and 5 attempts ran
// out while the first copies were still being served (a few hundred still
// did with 1,000 on a loaded machine).
const requestsUnanswered = 256

// requestAll asks for a backup of every workload at once, or as fast as
// the scheduler answers past requestsUnanswered.
func requestAll(ctx context.Context, rig *pipeline.Rig) *requests {
	r := &requests{n: len(rig.Workloads)}
	slots := make(chan struct{}, requestsUnanswered)
	for _, w := range rig.Workloads {
		r.wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			if _, err := rig.Backup(ctx, w); err != nil {
				r.mu.Lock()
				defer r.mu.Unlock()
				r.failed++
				if r.first == nil {
					r.first = err
				}
			}
		})
	}
	return r
}

// err says how many requests failed so far, and the first error; nil if none.
func (r *requests) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failed == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d backup requests failed, the first: %w", r.failed, r.n, r.first)
}

// Wait waits for every answer and fails the benchmark, once, if a request
// failed: one line, not one per request.
func (r *requests) Wait(b *testing.B) {
	b.Helper()
	r.wg.Wait()
	if err := r.err(); err != nil {
		b.Error(err)
	}
}

// waitHeld waits until the stand-in holds n cuts: every backup frozen and
// its snapshot asked for. It fails saying how far it got, at once if a
// request failed (its backup never comes).
func waitHeld(b *testing.B, rig *pipeline.Rig, reqs *requests, n int, timeout time.Duration) {
	b.Helper()
	start := time.Now()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for held := rig.Cuts.Held(); held < n; held = rig.Cuts.Held() {
		if err := reqs.err(); err != nil {
			b.Fatalf("every backup frozen, its cut held: %d of %d after %s: %v", held, n, time.Since(start).Round(time.Millisecond), err)
		}
		if time.Since(start) > timeout {
			b.Fatalf("every backup frozen, its cut held: %d of %d after %s", held, n, timeout)
		}
		<-tick.C
	}
	b.Logf("%d backups frozen, their cuts held, after %s", n, time.Since(start).Round(time.Millisecond))
}

// BenchmarkThroughput requests backups of n workloads at once (n
// concurrent RequestBackup calls) and waits until every one is resumed.
// ns/op is the time for all n; backups/s is n over it. bytes/backup is the
// peak of heap in use while the backups were in flight, above what it was
// before they were requested, divided by n: an upper bound, since it holds
// garbage not yet collected, and it counts the stand-ins' fake clientsets
// (each VolumeSnapshot stored, every API call recorded). retained-B/backup
// is the heap still live after the round and a GC, per backup; alloc-B/backup
// is everything allocated during the round, per backup; live-B/backup-in-flight
// is the heap live with every backup frozen at once (see liveInFlight);
// cpu-ms-per-backup is the process's CPU time during the rounds (see
// processCPU) over the backups they made.
//
// make bench runs 3 rounds of each size up to 1,000 and 1 of 10,000
// (-benchtime 1x, 1.5-3 min on 2 cores with its warm-up round and the
// in-flight round): see the Makefile.
func BenchmarkThroughput(b *testing.B) {
	for _, n := range []int{1, 10, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("workloads=%d", n), func(b *testing.B) {
			rig := pipeline.Start(b, options(n))
			ctx := context.Background()
			round := func() roundUse {
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				base := ms.HeapInuse
				baseAlloc, baseTotal := ms.HeapAlloc, ms.TotalAlloc
				peak := base
				stop := make(chan struct{})
				var sampler sync.WaitGroup
				sampler.Go(func() {
					t := time.NewTicker(5 * time.Millisecond)
					defer t.Stop()
					var ms runtime.MemStats
					for {
						select {
						case <-stop:
							return
						case <-t.C:
							runtime.ReadMemStats(&ms)
							peak = max(peak, ms.HeapInuse)
						}
					}
				})
				start, cpuStart := time.Now(), processCPU(b)
				reqs := requestAll(ctx, rig)
				wctx, cancel := context.WithTimeout(ctx, roundTimeout(n))
				defer cancel()
				for range n {
					o, err := rig.Next(wctx)
					if err != nil {
						b.Fatal(err)
					}
					if !o.Succeeded {
						b.Errorf("backup %s of %s ended with %s", o.BackupID, o.Workload, o.Kind)
					}
				}
				took, cpu := time.Since(start), processCPU(b)-cpuStart
				close(stop)
				sampler.Wait()
				reqs.Wait(b)
				over := make([]time.Duration, 0, n)
				for _, w := range rig.Workloads {
					if d, _, _, err := rig.FreezeOverhead(w.Namespace); err == nil {
						over = append(over, d)
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&ms)
				return roundUse{
					took: took, cpu: cpu, heapGrew: peak - base, over: over,
					retained: float64(int64(ms.HeapAlloc)-int64(baseAlloc)) / float64(n),
					alloc:    float64(ms.TotalAlloc-baseTotal) / float64(n),
				}
			}
			round() // warm up
			released := func() bool { return rig.Released(ctx) }
			eventstest.Eventually(b, settleTimeout(n), "every lease released", released)
			var total, cpu time.Duration
			var perBackup []float64
			var over []time.Duration
			var retained, alloc float64
			b.ResetTimer()
			for b.Loop() {
				r := round()
				b.StopTimer()
				retained, alloc = max(retained, r.retained), max(alloc, r.alloc)
				total += r.took
				cpu += r.cpu
				perBackup = append(perBackup, float64(r.heapGrew)/float64(n))
				over = append(over, r.over...)
				eventstest.Eventually(b, settleTimeout(n), "every lease released", released)
				b.StartTimer()
			}
			b.StopTimer()
			live := liveInFlight(b, rig, n)
			rounds := len(perBackup)
			mean := total / time.Duration(rounds)
			b.ReportMetric(float64(n)/mean.Seconds(), "backups/s")
			b.ReportMetric(maxOf(perBackup), "heap-peak-B/backup")
			b.ReportMetric(retained, "retained-B/backup")
			b.ReportMetric(live, "live-B/backup-in-flight")
			b.ReportMetric(alloc, "alloc-B/backup")
			b.ReportMetric(stats.Millis(cpu)/float64(rounds*n), "cpu-ms-per-backup")
			b.ReportMetric(stats.Millis(stats.Percentile(over, 50)), "freeze-overhead-p50-ms")
			b.ReportMetric(stats.Millis(stats.Percentile(over, 99)), "freeze-overhead-p99-ms")
		})
	}
}

// roundTimeout bounds one round of n backups: 10,000 at once take several
// times what 1,000 do, more on a machine shared with other work.
func roundTimeout(n int) time.Duration {
	return 2*time.Minute + time.Duration(n)*20*time.Millisecond
}

// settleTimeout bounds the wait for every lease of n backups to be
// released, which happens shortly after each Resumed: 10,000 deletions take
// their time on a shared 2-core machine.
func settleTimeout(n int) time.Duration {
	return 10*time.Second + time.Duration(n)*time.Millisecond
}

// roundUse is what one throughput round took: wall and CPU time for all n,
// how much the heap in use grew at its peak, the heap retained and
// allocated per backup, and each workload's freeze overhead.
type roundUse struct {
	took, cpu       time.Duration
	heapGrew        uint64
	retained, alloc float64
	over            []time.Duration
}

func maxOf(xs []float64) float64 {
	m := 0.0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}
