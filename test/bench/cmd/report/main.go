// Command report reads `go test -bench` output of test/bench and of the
// sandbox benchmarks of test/e2e (bench_test.go) on stdin or from -in,
// prints the figures against issue #8's targets, and with -samples and
// -plot draws the freeze-overhead distribution as a PNG histogram.
//
//	go test -run '^$' -bench . ./test/bench -args -freeze-samples /tmp/s | tee out.txt
//	go run ./test/bench/cmd/report -in out.txt -samples /tmp/s -plot freeze.png
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
	if err := fs.Parse(args); err != nil {
		return err
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
	if *plotPath == "" {
		return nil
	}
	if *samplesPath == "" {
		return errors.New("-plot needs -samples")
	}
	sf, err := os.Open(*samplesPath)
	if err != nil {
		return err
	}
	defer sf.Close()
	samples, err := stats.Read(sf)
	if err != nil {
		return err
	}
	out, err := os.Create(*plotPath)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	h := report.Histogram{Title: "freeze overhead, one backup at a time: (post-hook start - pre-hook end) - snapshot cut", Target: 5 * time.Millisecond}
	if err := h.WritePNG(out, samples); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nfreeze-overhead histogram (%d samples): %s\n", len(samples), *plotPath)
	return nil
}
