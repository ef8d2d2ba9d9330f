// Package bench holds freezeframe's benchmarks (issue #8): the latency of one
// event hop through pkg/events against raw JetStream, the orchestration
// overhead of one backup with instant stand-ins for exec and the CSI
// snapshot controller, and throughput with many backups at once.
//
// They are benchmarks, not timed tests: nothing here fails because a shared
// machine was slow. Figures come out as custom metrics (b.ReportMetric) in
// the standard benchmark format, so benchstat can compare runs, and
// cmd/report turns them into a table against the targets and a plot.
//
//	go test -run '^$' -bench . -benchtime 200x ./test/bench
//	go test -run '^$' -bench . ./test/bench | go run ./test/bench/cmd/report -plot freeze.png
package bench
