// Command report reads `go test -bench` output of test/bench and of the
// sandbox benchmarks of test/e2e (bench_test.go) on stdin or from -in,
// prints the figures against the targets of issues #8 and #16, with
// -samples and -plot draws the freeze-overhead distribution as a PNG
// histogram, and with -plot-concurrency the writer-observed pause against
// the number of backups at once.
//
//	go test -run '^$' -bench . ./test/bench -args -freeze-samples /tmp/s | tee out.txt
//	go run ./test/bench/cmd/report -in out.txt -samples /tmp/s -plot freeze.png -plot-concurrency pause.png
//
// It exits 0 even when a figure misses its target: a shared machine may be
// slow, and benchmarks are not tests.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/freezeframe/freezeframe/test/bench/report"
	"github.com/freezeframe/freezeframe/test/bench/stats"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(_ context.Context, args []string, stdin io.Reader, stdout io.Writer) (err error) {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	in := fs.String("in", "-", "benchmark output to read; - for stdin")
	samplesPath := fs.String("samples", "", "freeze-overhead samples written by the benchmarks' -freeze-samples")
	plotPath := fs.String("plot", "", "write the freeze-overhead histogram to this PNG (needs -samples)")
	concurrencyPath := fs.String("plot-concurrency", "", "write the writer-observed pause (p50, p99) and the cut against the number of backups at once to this PNG, from the sandbox's "+report.SandboxFreezePrefix+"N figures; without them it says so and writes nothing")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *plotPath != "" && *samplesPath == "" {
		return errors.New("-plot needs -samples")
	}
	r := stdin
	if *in != "-" {
		f, err := os.Open(*in)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	parsed, err := report.Parse(r)
	if err != nil {
		return err
	}
	if len(parsed.Results) == 0 {
		return errors.New("no benchmark results in the input")
	}
	if err := report.WriteTable(stdout, parsed.Machine, report.Rows(parsed, report.Figures)); err != nil {
		return err
	}
	if *plotPath != "" {
		if err := plotFreezeOverhead(stdout, *samplesPath, *plotPath); err != nil {
			return err
		}
	}
	if *concurrencyPath != "" {
		return plotPauseVsConcurrency(stdout, parsed, *concurrencyPath)
	}
	return nil
}

func plotFreezeOverhead(stdout io.Writer, samplesPath, plotPath string) error {
	sf, err := os.Open(samplesPath)
	if err != nil {
		return err
	}
	defer sf.Close()
	samples, err := stats.Read(sf)
	if err != nil {
		return err
	}
	h := report.Histogram{Title: "freeze overhead, one backup at a time: (post-hook start - pre-hook end) - snapshot cut", Target: 5 * time.Millisecond}
	if err := writeFile(plotPath, func(w io.Writer) error { return h.WritePNG(w, samples) }); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nfreeze-overhead histogram (%d samples): %s\n", len(samples), plotPath)
	return nil
}

// plotPauseVsConcurrency draws issue #16's targets: at every size the
// pause p99 at most twice the pause alone, and at most 300 ms at 50.
func plotPauseVsConcurrency(stdout io.Writer, run *report.Run, path string) error {
	pts := report.PauseVsConcurrency(run)
	if len(pts) == 0 {
		fmt.Fprintf(stdout, "\npause against concurrency: not run (no %sN in the input), %s not written\n", report.SandboxFreezePrefix, path)
		return nil
	}
	p := report.ConcurrencyPlot{
		Title:       "writer-observed pause against backups at once, sandbox (p50, p99) and the storage's cut (p50)",
		AloneFactor: 2,
		Targets:     []report.ConcurrencyTarget{{Workloads: 50, P99Ms: 300}},
	}
	if err := writeFile(path, func(w io.Writer) error { return p.WritePNG(w, pts) }); err != nil {
		return err
	}
	sizes := make([]int, len(pts))
	for i, pt := range pts {
		sizes[i] = pt.Workloads
	}
	fmt.Fprintf(stdout, "pause against concurrency (workloads at once %v): %s\n", sizes, path)
	return nil
}

// writeFile creates path and writes it with write; a failed write removes
// it, so that no half-written PNG is left behind.
func writeFile(path string, write func(io.Writer) error) (err error) {
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	return write(out)
}
