package report_test

import (
	"bytes"
	"image/png"
	"math"
	"strings"
	"testing"

	"github.com/freezeframe/freezeframe/test/bench/report"
)

// benchTxt is a made-up `make bench` output: the in-process benchmarks
// twice (-count 2, so the report takes medians), the sandbox's Redis demo
// and sizes 1, 50 and 500, and no dead man's switch.
const benchTxt = `goos: linux
goarch: amd64
pkg: github.com/freezeframe/freezeframe/test/bench
cpu: AMD EPYC 7B13
BenchmarkHop-2   	    3000	  62.0 raw-p50-us	  90.0 events-p50-us	 1.45 p50-ratio	 1.30 p99-ratio
BenchmarkHop-2   	    3000	  64.0 raw-p50-us	  94.0 events-p50-us	 1.55 p50-ratio	 1.20 p99-ratio
BenchmarkThroughput/workloads=1000-2         	       3	 600000000 ns/op	  16384 live-B/backup-in-flight	 0.80 cpu-ms-per-backup
BenchmarkThroughput/workloads=10000-2        	       1	8000000000 ns/op	  20480 live-B/backup-in-flight	 1.10 cpu-ms-per-backup
some log line the report skips
BenchmarkSandboxRedis-2              	      10	 95.0 cut-ms	 101 writer-pause-ms	 130 writer-pause-p99-ms	 6.00 writer-beyond-cut-ms	 35.0 writer-beyond-cut-p99-ms
BenchmarkSandboxFreeze/workloads=1-2 	      10	 100 writer-pause-p50-ms	 140 writer-pause-p99-ms	 12.0 writer-beyond-cut-p50-ms	 90.0 cut-p50-ms	 0.9 batch-vs-storage
BenchmarkSandboxFreeze/workloads=50-2	      10	 200 writer-pause-p50-ms	 250 writer-pause-p99-ms	 150 cut-p50-ms	 1.10 batch-vs-storage	 2.5 all-resumed-s
BenchmarkSandboxFreeze/workloads=500-2	       2	 300 writer-pause-p50-ms	 420 writer-pause-p99-ms	 160 cut-p50-ms	 1.30 batch-vs-storage
`

func parse(t *testing.T, s string) *report.Run {
	t.Helper()
	run, err := report.Parse(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// row finds the figure titled title; the titles are unique.
func row(t *testing.T, rows []report.Row, title string) report.Row {
	t.Helper()
	var found []report.Row
	for _, r := range rows {
		if r.Title == title {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d rows titled %q, want 1", len(found), title)
	}
	return found[0]
}

func TestParseTakesMediansAndMachine(t *testing.T) {
	run := parse(t, benchTxt)
	if want := "goos: linux, goarch: amd64, cpu: AMD EPYC 7B13"; run.Machine != want {
		t.Errorf("machine %q, want %q", run.Machine, want)
	}
	if v, _ := run.Value(report.Metric{Benchmark: "BenchmarkHop", Unit: "events-p50-us"}); v != 92 {
		t.Errorf("events-p50-us median %v, want 92 (of 90 and 94)", v)
	}
	if v, ok := run.Value(report.Metric{Benchmark: "BenchmarkSandboxFreeze/workloads=50", Unit: "writer-pause-p99-ms"}); !ok || v != 250 {
		t.Errorf("writer-pause-p99-ms at 50: %v, %v; want 250, true", v, ok)
	}
	if _, ok := run.Value(report.Metric{Benchmark: "BenchmarkSandboxDeadMansSwitch", Unit: "writable-after-kill-ms"}); ok {
		t.Error("a benchmark not in the input has a value")
	}
}

func TestRowsAgainstTargets(t *testing.T) {
	rows := report.Rows(parse(t, benchTxt), report.Figures)
	tests := []struct {
		title  string
		value  float64
		status string
	}{
		// Derived: 250 / 140 and 420 / 140.
		{"sandbox, writer pause p99: 50 at once / 1 alone", 250.0 / 140, "ok"},
		{"sandbox, writer pause p99: 500 at once / 1 alone", 3, "MISSED"},
		{"sandbox, 50 at once: writer pause p99", 250, "ok"},
		{"sandbox, 1 alone: writer pause beyond the cut p50", 12, "MISSED"},
		{"sandbox redis: writer pause beyond the cut", 6, "ok"},
		{"sandbox, 50 at once: batch time / the storage's bound", 1.1, "ok"},
		{"sandbox, 500 at once: batch time / the storage's bound", 1.3, "MISSED"},
		// No target at 1 alone: the batch of one is not admitted.
		{"sandbox, 1 alone: batch time / the storage's bound", 0.9, ""},
		{"sandbox redis: snapshot cut (create -> creationTime)", 95, ""},
		// Scaled: ns to s, B to KiB; medians of two runs.
		{"in process, 10,000 at once: all resumed", 8, ""},
		{"in process, 10,000 at once: live heap per backup in flight", 20, ""},
		{"in process, 10,000 at once: CPU per backup", 1.1, ""},
		{"hop p50, events / raw", 1.5, "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.title, func(t *testing.T) {
			r := row(t, rows, tt.title)
			if !r.Found {
				t.Fatal("not found")
			}
			if math.Abs(r.Value-tt.value) > 1e-9 {
				t.Errorf("value %v, want %v", r.Value, tt.value)
			}
			if got := r.Status(); got != tt.status {
				t.Errorf("status %q, want %q", got, tt.status)
			}
		})
	}
}

func TestRowsNotRun(t *testing.T) {
	// Without size 1, neither ratio has a denominator; without the dead
	// man's switch, its rows have nothing.
	run := parse(t, strings.ReplaceAll(benchTxt, "BenchmarkSandboxFreeze/workloads=1-2", "BenchmarkSandboxFreeze/workloads=2-2"))
	rows := report.Rows(run, report.Figures)
	for _, title := range []string{
		"sandbox, writer pause p99: 50 at once / 1 alone",
		"sandbox, writer pause p99: 500 at once / 1 alone",
		"sandbox, hooker killed while frozen: writable again",
		"sandbox, 1 alone: writer pause p50",
		"in process, 10 at once: CPU per backup",
	} {
		if r := row(t, rows, title); r.Found || r.Status() != "" {
			t.Errorf("%s: found %v, status %q; want not run, no status", title, r.Found, r.Status())
		}
	}
	// A zero denominator is not a ratio either.
	zero := parse(t, strings.Replace(benchTxt, "140 writer-pause-p99-ms", "0 writer-pause-p99-ms", 1))
	if r := row(t, report.Rows(zero, report.Figures), "sandbox, writer pause p99: 50 at once / 1 alone"); r.Found {
		t.Errorf("ratio over a zero: %v, want not run", r.Value)
	}
}

func TestWriteTable(t *testing.T) {
	run := parse(t, benchTxt)
	var out bytes.Buffer
	if err := report.WriteTable(&out, run.Machine, report.Rows(run, report.Figures)); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	// line is the row of title, its columns one space apart.
	line := func(title string) string {
		t.Helper()
		for l := range strings.Lines(text) {
			if strings.Contains(l, "  "+title+"  ") {
				return strings.Join(strings.Fields(l), " ")
			}
		}
		t.Fatalf("no line for %q in\n%s", title, text)
		return ""
	}
	for _, sec := range report.Sections {
		if !strings.Contains(text, sec.Heading) {
			t.Errorf("no heading %q", sec.Heading)
		}
	}
	if !strings.Contains(text, "issue #16") || !strings.Contains(text, "Kanister") {
		t.Error("no reference to Kanister's figures from issue #16")
	}
	checks := []struct{ title, want string }{
		{"sandbox, hooker killed while frozen: writable again", "writable again not run <= 1000 ms"},
		{"sandbox, writer pause p99: 500 at once / 1 alone", "3.00 × <= 2.00 × MISSED"},
		{"sandbox, writer pause p99: 50 at once / 1 alone", "1.79 × <= 2.00 × ok"},
		{"sandbox, 50 at once: writer pause p50", "Kanister 39.8 / 0.78 s, no cut"},
	}
	for _, c := range checks {
		if l := line(c.title); !strings.Contains(l, c.want) {
			t.Errorf("line %q lacks %q", l, c.want)
		}
	}
	if l := line("sandbox, hooker killed while frozen: writable again"); !strings.HasSuffix(l, "<= 1000 ms") {
		t.Errorf("a figure not run has a status: %q", l)
	}
	if strings.Index(text, report.Sections[0].Heading) > strings.Index(text, report.Sections[1].Heading) {
		t.Error("sections out of order")
	}
}

func TestFiguresAreUnique(t *testing.T) {
	type key struct {
		metric, over report.Metric
	}
	seen := map[key]string{}
	titles := map[string]bool{}
	for _, f := range report.Figures {
		k := key{report.Metric{Benchmark: f.Benchmark, Unit: f.Unit}, f.Over}
		if prev, dup := seen[k]; dup {
			t.Errorf("%q and %q show the same figure", prev, f.Title)
		}
		seen[k] = f.Title
		if titles[f.Title] {
			t.Errorf("title %q twice", f.Title)
		}
		titles[f.Title] = true
	}
}

func TestPauseVsConcurrency(t *testing.T) {
	// An old run's size without any plotted figure is left out.
	pts := report.PauseVsConcurrency(parse(t, benchTxt+"BenchmarkSandboxFreeze/workloads=20-2 	 1	 5 freeze-beyond-cut-p50-ms\n"))
	var sizes []int
	for _, p := range pts {
		sizes = append(sizes, p.Workloads)
	}
	if len(sizes) != 3 || sizes[0] != 1 || sizes[1] != 50 || sizes[2] != 500 {
		t.Fatalf("sizes %v, want [1 50 500]", sizes)
	}
	if p := pts[1]; p.PauseP50 != 200 || p.PauseP99 != 250 || p.CutP50 != 150 {
		t.Errorf("at 50: %+v", p)
	}
	var out bytes.Buffer
	plot := report.ConcurrencyPlot{Title: "test", AloneFactor: 2, Targets: []report.ConcurrencyTarget{{Workloads: 50, P99Ms: 300}}}
	if err := plot.WritePNG(&out, pts); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&out)
	if err != nil {
		t.Fatalf("decode the plot: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 900 || b.Dy() != 480 {
		t.Errorf("plot %v, want 900x480", b)
	}
	// The target's colour is on the plot (the dashed 2x line and the X).
	red := 0
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y++ {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x++ {
			if r, g, b, _ := img.At(x, y).RGBA(); r>>8 == 0xc8 && g>>8 == 0x20 && b>>8 == 0x20 {
				red++
			}
		}
	}
	if red < 100 {
		t.Errorf("%d pixels in the target's colour, want the targets drawn", red)
	}
}

func TestPauseVsConcurrencyNothingToPlot(t *testing.T) {
	pts := report.PauseVsConcurrency(parse(t, "BenchmarkHop-2 	 1	 5 raw-p50-us\n"))
	if len(pts) != 0 {
		t.Fatalf("points %v from a run without the sandbox", pts)
	}
	if err := (report.ConcurrencyPlot{}).WritePNG(&bytes.Buffer{}, pts); err == nil {
		t.Error("a plot of nothing: no error")
	}
	// One size alone is still a plot, with no relative target to draw.
	one := report.PauseVsConcurrency(parse(t, "BenchmarkSandboxFreeze/workloads=50-2 	 1	 5 cut-p50-ms\n"))
	var out bytes.Buffer
	if err := (report.ConcurrencyPlot{AloneFactor: 2}).WritePNG(&out, one); err != nil {
		t.Fatal(err)
	}
	if _, err := png.Decode(&out); err != nil {
		t.Fatal(err)
	}
}
