// Package bench holds freezeframe's benchmarks: the latency of one event hop
// through pkg/events against raw JetStream, the orchestration overhead of one
// backup with instant stand-ins for exec and the CSI snapshot controller, and
// throughput with many backups at once. The benchmarks on the sandbox, with
// real exec and real VolumeSnapshots, are in test/e2e/bench_test.go; make
// bench runs both (and pkg/events' BenchmarkHandle), and cmd/report reads
// them all. docs/performance.md has the latest figures.
//
// They are benchmarks, not timed tests: nothing here fails because a shared
// machine was slow. Figures come out as custom metrics (b.ReportMetric) in
// the standard benchmark format, so benchstat can compare runs, and
// cmd/report turns them into a table against the targets and a plot.
//
//	cd test/bench
//	go test -run '^$' -bench 'Hop|Codec' -benchtime 3000x . | tee out.txt
//	go test -run '^$' -bench Orchestration -benchtime 1000x . -args -freeze-samples /tmp/s | tee -a out.txt
//	go test -run '^$' -bench 'Throughput/workloads=(1|10|100|1000)$' -benchtime 3x . | tee -a out.txt
//	go test -run '^$' -bench 'Throughput/workloads=10000$' -benchtime 1x -timeout 20m . | tee -a out.txt
//	go run ./cmd/report -in out.txt -samples /tmp/s -plot freeze-overhead.png -plot-concurrency pause-vs-concurrency.png
//
// Throughput also reports cpu-ms-per-backup: the process's CPU time
// (getrusage, user and system) during the rounds over the backups they
// made, the embedded NATS server and the stand-ins included. At 10,000 at
// once the requests wait for the scheduler's answer 256 at a time, and the
// freeze leases and snapshot progress are written every 5 s instead of
// every second (see pipeline.KeepEvery).
//
// -args -service-logs prints the services' warnings (a handler that failed
// and was redelivered shows there). There are no tests here, so make test
// only builds the package.
package bench
