// Package stats computes the percentiles the benchmarks report and keeps
// their raw samples in files, one duration in nanoseconds a line, for the
// report's plot.
package stats

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Percentile returns the p-th percentile (0 < p <= 100) of ds by the
// nearest-rank method; ds need not be sorted and is left untouched.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(p/100*float64(len(s)) + 0.999999)
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// Micros is d in microseconds, the unit the latency metrics use.
func Micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// Millis is d in milliseconds.
func Millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// AppendFile appends samples to path, creating it when missing.
func AppendFile(path string, ds []time.Duration) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("write samples: %w", err)
	}
	w := bufio.NewWriter(f)
	for _, d := range ds {
		fmt.Fprintln(w, int64(d))
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("write samples %s: %w", path, err)
	}
	return f.Close()
}

// Read reads samples written by AppendFile.
func Read(r io.Reader) ([]time.Duration, error) {
	var out []time.Duration
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		n, err := strconv.ParseInt(line, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("read samples: %w", err)
		}
		out = append(out, time.Duration(n))
	}
	return out, sc.Err()
}
