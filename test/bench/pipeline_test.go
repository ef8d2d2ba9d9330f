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
	var reqs sync.WaitGroup
	for _, w := range rig.Workloads {
		reqs.Go(func() {
			if _, err := rig.Backup(ctx, w); err != nil {
				b.Error(err)
			}
		})
	}
	eventstest.Eventually(b, 2*time.Minute, "every backup frozen, its cut held", func() bool { return rig.Cuts.Held() == n })
	rig.ForgetCalls()
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	live := float64(int64(ms.HeapAlloc)-int64(base)) / float64(n)
	if *heapProfile != "" {
		writeHeapProfile(b, fmt.Sprintf("%s.%d", *heapProfile, n))
	}
	rig.Cuts.Release()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for range n {
		if _, err := rig.Next(wctx); err != nil {
			b.Fatal(err)
		}
	}
	reqs.Wait()
	eventstest.Eventually(b, 10*time.Second, "every lease released", func() bool { return rig.Released(ctx) })
	return live
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
// is the heap live with every backup frozen at once (see liveInFlight).
func BenchmarkThroughput(b *testing.B) {
	for _, n := range []int{1, 10, 100, 1000} {
		b.Run(fmt.Sprintf("workloads=%d", n), func(b *testing.B) {
			rig := pipeline.Start(b, options(n))
			ctx := context.Background()
			round := func() (time.Duration, uint64, memUse, []time.Duration) {
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
				start := time.Now()
				var reqs sync.WaitGroup
				for _, w := range rig.Workloads {
					reqs.Go(func() {
						if _, err := rig.Backup(ctx, w); err != nil {
							b.Error(err)
						}
					})
				}
				wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
				defer cancel()
				over := make([]time.Duration, 0, n)
				for range n {
					o, err := rig.Next(wctx)
					if err != nil {
						b.Fatal(err)
					}
					if !o.Succeeded {
						b.Errorf("backup %s of %s ended with %s", o.BackupID, o.Workload, o.Kind)
					}
				}
				took := time.Since(start)
				close(stop)
				sampler.Wait()
				reqs.Wait()
				for _, w := range rig.Workloads {
					if d, _, _, err := rig.FreezeOverhead(w.Namespace); err == nil {
						over = append(over, d)
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&ms)
				mu := memUse{retained: float64(int64(ms.HeapAlloc)-int64(baseAlloc)) / float64(n), alloc: float64(ms.TotalAlloc-baseTotal) / float64(n)}
				return took, peak - base, mu, over
			}
			round() // warm up
			released := func() bool { return rig.Released(ctx) }
			eventstest.Eventually(b, 10*time.Second, "every lease released", released)
			var total time.Duration
			var perBackup []float64
			var over []time.Duration
			var mem memUse
			b.ResetTimer()
			for b.Loop() {
				took, grew, m, o := round()
				b.StopTimer()
				mem.retained, mem.alloc = max(mem.retained, m.retained), max(mem.alloc, m.alloc)
				total += took
				perBackup = append(perBackup, float64(grew)/float64(n))
				over = append(over, o...)
				eventstest.Eventually(b, 10*time.Second, "every lease released", released)
				b.StartTimer()
			}
			b.StopTimer()
			live := liveInFlight(b, rig, n)
			mean := total / time.Duration(len(perBackup))
			b.ReportMetric(float64(n)/mean.Seconds(), "backups/s")
			b.ReportMetric(maxOf(perBackup), "heap-peak-B/backup")
			b.ReportMetric(mem.retained, "retained-B/backup")
			b.ReportMetric(live, "live-B/backup-in-flight")
			b.ReportMetric(mem.alloc, "alloc-B/backup")
			b.ReportMetric(stats.Millis(stats.Percentile(over, 50)), "freeze-overhead-p50-ms")
			b.ReportMetric(stats.Millis(stats.Percentile(over, 99)), "freeze-overhead-p99-ms")
		})
	}
}

type memUse struct{ retained, alloc float64 }

func maxOf(xs []float64) float64 {
	m := 0.0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}
