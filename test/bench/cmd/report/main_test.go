package main

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const benchTxt = `cpu: AMD EPYC 7B13
BenchmarkOrchestration-2 	    1000	 1.5 e2e-p50-ms	 1.2 freeze-overhead-p50-ms	 4.0 freeze-overhead-p99-ms
BenchmarkSandboxFreeze/workloads=1-2 	      10	 100 writer-pause-p50-ms	 140 writer-pause-p99-ms	 90.0 cut-p50-ms
BenchmarkSandboxFreeze/workloads=50-2	      10	 200 writer-pause-p50-ms	 250 writer-pause-p99-ms	 150 cut-p50-ms
`

func write(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func decodePNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("%s: %v", path, err)
	}
}

func TestRunWritesTableAndBothPlots(t *testing.T) {
	dir := t.TempDir()
	hist, pause := filepath.Join(dir, "freeze-overhead.png"), filepath.Join(dir, "pause-vs-concurrency.png")
	var out bytes.Buffer
	err := run(t.Context(), []string{"-in", write(t, "bench.txt", benchTxt), "-samples", write(t, "samples.txt", "1000000\n2000000\n1500000\n"),
		"-plot", hist, "-plot-concurrency", pause}, nil, &out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"what the application feels", "sandbox, writer pause p99: 50 at once / 1 alone", "histogram (3 samples)", "workloads at once [1 50]"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	decodePNG(t, hist)
	decodePNG(t, pause)
}

func TestRunWithoutSandboxSaysNotRun(t *testing.T) {
	pause := filepath.Join(t.TempDir(), "pause-vs-concurrency.png")
	var out bytes.Buffer
	in := strings.NewReader("BenchmarkHop-2 	 3000	 62.0 raw-p50-us\n")
	if err := run(t.Context(), []string{"-plot-concurrency", pause}, in, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "pause against concurrency: not run") {
		t.Errorf("output does not say the plot was not run:\n%s", out.String())
	}
	if _, err := os.Stat(pause); !os.IsNotExist(err) {
		t.Errorf("%s written without figures (stat: %v)", pause, err)
	}
}

func TestRunRefuses(t *testing.T) {
	tests := []struct {
		name string
		args []string
		in   string
		want string
	}{
		{"histogram without samples", []string{"-plot", filepath.Join(t.TempDir(), "h.png")}, benchTxt, "-plot needs -samples"},
		{"no results", nil, "PASS\nok  \tx\t0.1s\n", "no benchmark results"},
		{"missing input", []string{"-in", filepath.Join(t.TempDir(), "missing.txt")}, "", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(t.Context(), tt.args, strings.NewReader(tt.in), &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one saying %q", err, tt.want)
			}
		})
	}
}
