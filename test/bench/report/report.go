// Package report reads `go test -bench` output, sets the figures against
// freezeframe's targets (issue #8) and plots the freeze-overhead
// distribution.
//
// # Adding figures
//
// A figure is one metric (a unit on a benchmark line) of one benchmark,
// found by name. The sandbox benchmarks (issue #8 parts 4 and 5,
// test/e2e/bench_test.go) print lines with the names and units in Figures;
// when they did not run, their rows say "not run".
package report

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Result is the metrics of one benchmark, the median over its runs
// (go test -count) per unit.
type Result struct {
	Name    string
	Metrics map[string]float64
}

// Run is one parsed `go test -bench` output.
type Run struct {
	// Machine is the goos, goarch and cpu lines.
	Machine string
	Results map[string]Result
}

var procSuffix = regexp.MustCompile(`-\d+$`)

// Parse reads benchmark output; other lines are skipped.
func Parse(r io.Reader) (*Run, error) {
	samples := map[string]map[string][]float64{}
	var order []string
	var machine []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, k := range []string{"goos:", "goarch:", "cpu:"} {
			if strings.HasPrefix(line, k) && !slices.Contains(machine, line) {
				machine = append(machine, line)
			}
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := procSuffix.ReplaceAllString(f[0], "")
		if samples[name] == nil {
			samples[name] = map[string][]float64{}
			order = append(order, name)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			samples[name][f[i+1]] = append(samples[name][f[i+1]], v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read benchmark output: %w", err)
	}
	run := &Run{Machine: strings.Join(machine, ", "), Results: map[string]Result{}}
	for _, name := range order {
		res := Result{Name: name, Metrics: map[string]float64{}}
		for unit, vs := range samples[name] {
			res.Metrics[unit] = median(vs)
		}
		run.Results[name] = res
	}
	return run, nil
}

func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Figure is one reported number and, optionally, its target.
type Figure struct {
	Part      int    // issue #8 part
	Title     string // what it is
	Benchmark string // name without the -GOMAXPROCS suffix
	Unit      string
	// Scale converts the metric to the shown unit (1 when zero).
	Scale float64
	Shown string // unit as shown
	// Target, when Op is not empty: the value must be Op Target.
	Op     string // "<", "<="
	Target float64
}

// Figures are the figures. Parts 4 and 5 are run on the sandbox by
// test/e2e, under the names given here.
var Figures = []Figure{
	{Part: 1, Title: "hop p50, raw JetStream", Benchmark: "BenchmarkHop", Unit: "raw-p50-us", Shown: "µs"},
	{Part: 1, Title: "hop p50, pkg/events", Benchmark: "BenchmarkHop", Unit: "events-p50-us", Shown: "µs"},
	{Part: 1, Title: "hop p99, raw JetStream", Benchmark: "BenchmarkHop", Unit: "raw-p99-us", Shown: "µs"},
	{Part: 1, Title: "hop p99, pkg/events", Benchmark: "BenchmarkHop", Unit: "events-p99-us", Shown: "µs"},
	{Part: 1, Title: "hop p50, raw with an event's headers", Benchmark: "BenchmarkHop", Unit: "raw-ce-p50-us", Shown: "µs"},
	{Part: 1, Title: "hop p50, raw settled with DoubleAck", Benchmark: "BenchmarkHop", Unit: "raw-doubleack-p50-us", Shown: "µs"},
	{Part: 1, Title: "hop p50, raw publish, pkg/events consumer", Benchmark: "BenchmarkHop", Unit: "events-consume-p50-us", Shown: "µs"},
	{Part: 1, Title: "encode + decode one event (CPU)", Benchmark: "BenchmarkCodec", Unit: "ns/op", Scale: 1e-3, Shown: "µs"},
	{Part: 1, Title: "consumer's work per event, no server (CPU)", Benchmark: "BenchmarkHandle", Unit: "ns/op", Scale: 1e-3, Shown: "µs"},
	{Part: 1, Title: "hop p50, events / raw", Benchmark: "BenchmarkHop", Unit: "p50-ratio", Shown: "×", Op: "<=", Target: 1.5},
	{Part: 1, Title: "hop p99, events / raw", Benchmark: "BenchmarkHop", Unit: "p99-ratio", Shown: "×", Op: "<=", Target: 1.5},
	{Part: 2, Title: "requested -> resumed p50", Benchmark: "BenchmarkOrchestration", Unit: "e2e-p50-ms", Shown: "ms"},
	{Part: 2, Title: "requested -> resumed p99", Benchmark: "BenchmarkOrchestration", Unit: "e2e-p99-ms", Shown: "ms"},
	{Part: 2, Title: "freeze overhead p50", Benchmark: "BenchmarkOrchestration", Unit: "freeze-overhead-p50-ms", Shown: "ms"},
	{Part: 2, Title: "freeze overhead p99", Benchmark: "BenchmarkOrchestration", Unit: "freeze-overhead-p99-ms", Shown: "ms", Op: "<", Target: 5},
	{Part: 2, Title: "freeze overhead max", Benchmark: "BenchmarkOrchestration", Unit: "freeze-overhead-max-ms", Shown: "ms"},
	{Part: 3, Title: "1 backup", Benchmark: "BenchmarkThroughput/workloads=1", Unit: "backups/s", Shown: "backups/s"},
	{Part: 3, Title: "10 at once", Benchmark: "BenchmarkThroughput/workloads=10", Unit: "backups/s", Shown: "backups/s"},
	{Part: 3, Title: "100 at once", Benchmark: "BenchmarkThroughput/workloads=100", Unit: "backups/s", Shown: "backups/s"},
	{Part: 3, Title: "1,000 at once", Benchmark: "BenchmarkThroughput/workloads=1000", Unit: "backups/s", Shown: "backups/s"},
	{Part: 3, Title: "1,000 at once, all resumed", Benchmark: "BenchmarkThroughput/workloads=1000", Unit: "ns/op", Scale: 1e-9, Shown: "s", Op: "<", Target: 10},
	{Part: 3, Title: "1,000 at once, live heap per backup in flight", Benchmark: "BenchmarkThroughput/workloads=1000", Unit: "live-B/backup-in-flight", Scale: 1.0 / 1024, Shown: "KiB", Op: "<", Target: 20},
	{Part: 3, Title: "1,000 at once, heap peak per backup (garbage included)", Benchmark: "BenchmarkThroughput/workloads=1000", Unit: "heap-peak-B/backup", Scale: 1.0 / 1024, Shown: "KiB"},
	{Part: 3, Title: "1,000 at once, retained per backup", Benchmark: "BenchmarkThroughput/workloads=1000", Unit: "retained-B/backup", Scale: 1.0 / 1024, Shown: "KiB"},
	{Part: 3, Title: "1,000 at once, allocated per backup", Benchmark: "BenchmarkThroughput/workloads=1000", Unit: "alloc-B/backup", Scale: 1.0 / 1024, Shown: "KiB"},
	{Part: 3, Title: "1,000 at once, freeze overhead p99", Benchmark: "BenchmarkThroughput/workloads=1000", Unit: "freeze-overhead-p99-ms", Shown: "ms"},
	{Part: 4, Title: "sandbox redis: frozen (pre-hook done -> post-hook start)", Benchmark: "BenchmarkSandboxRedis", Unit: "frozen-ms", Shown: "ms"},
	{Part: 4, Title: "sandbox redis: snapshot cut (create -> creationTime)", Benchmark: "BenchmarkSandboxRedis", Unit: "cut-ms", Shown: "ms"},
	{Part: 4, Title: "sandbox redis: frozen beyond the cut", Benchmark: "BenchmarkSandboxRedis", Unit: "freeze-beyond-cut-ms", Shown: "ms"},
	{Part: 4, Title: "sandbox redis: snapshot ready (create -> readyToUse)", Benchmark: "BenchmarkSandboxRedis", Unit: "ready-ms", Shown: "ms"},
	{Part: 4, Title: "sandbox redis: requested -> resumed", Benchmark: "BenchmarkSandboxRedis", Unit: "e2e-ms", Shown: "ms"},
	{Part: 5, Title: "sandbox, 1 alone: freeze beyond cut p50", Benchmark: "BenchmarkSandboxFreeze/workloads=1", Unit: "freeze-beyond-cut-p50-ms", Shown: "ms", Op: "<", Target: 20},
	{Part: 5, Title: "sandbox, 1 alone: freeze beyond cut p99", Benchmark: "BenchmarkSandboxFreeze/workloads=1", Unit: "freeze-beyond-cut-p99-ms", Shown: "ms"},
	{Part: 5, Title: "sandbox, 50 at once: freeze beyond cut p50", Benchmark: "BenchmarkSandboxFreeze/workloads=50", Unit: "freeze-beyond-cut-p50-ms", Shown: "ms"},
	{Part: 5, Title: "sandbox, 50 at once: freeze beyond cut p99", Benchmark: "BenchmarkSandboxFreeze/workloads=50", Unit: "freeze-beyond-cut-p99-ms", Shown: "ms", Op: "<", Target: 100},
	{Part: 5, Title: "sandbox, 50 at once: snapshot cut p50", Benchmark: "BenchmarkSandboxFreeze/workloads=50", Unit: "cut-p50-ms", Shown: "ms"},
	{Part: 5, Title: "sandbox, 50 at once: frozen p99", Benchmark: "BenchmarkSandboxFreeze/workloads=50", Unit: "frozen-p99-ms", Shown: "ms"},
	{Part: 5, Title: "sandbox, 50 at once: all resumed", Benchmark: "BenchmarkSandboxFreeze/workloads=50", Unit: "all-resumed-s", Shown: "s", Op: "<", Target: 5},
}

// Row is a figure with its value from a run.
type Row struct {
	Figure
	Value float64
	Found bool
}

// Met reports whether the figure meets its target; true without one.
func (r Row) Met() bool {
	switch r.Op {
	case "<":
		return r.Value < r.Target
	case "<=":
		return r.Value <= r.Target
	}
	return true
}

// Rows sets run against figs.
func Rows(run *Run, figs []Figure) []Row {
	out := make([]Row, 0, len(figs))
	for _, f := range figs {
		row := Row{Figure: f}
		if res, ok := run.Results[f.Benchmark]; ok {
			if v, ok := res.Metrics[f.Unit]; ok {
				scale := f.Scale
				if scale == 0 {
					scale = 1
				}
				row.Value, row.Found = v*scale, true
			}
		}
		out = append(out, row)
	}
	return out
}

// WriteTable prints rows as an aligned table.
func WriteTable(w io.Writer, machine string, rows []Row) error {
	if machine != "" {
		fmt.Fprintf(w, "machine: %s\n\n", machine)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "part\tfigure\tvalue\ttarget\t")
	for _, r := range rows {
		val, target, status := "not run", "", ""
		if r.Found {
			val = formatValue(r.Value) + " " + r.Shown
		}
		if r.Op != "" {
			target = r.Op + " " + formatValue(r.Target) + " " + r.Shown
			switch {
			case !r.Found:
			case r.Met():
				status = "ok"
			default:
				status = "MISSED"
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", r.Part, r.Title, val, target, status)
	}
	return tw.Flush()
}

func formatValue(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}
