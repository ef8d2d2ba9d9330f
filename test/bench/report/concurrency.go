package report

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// SandboxFreezePrefix names the sandbox benchmark of N backups at once:
// the prefix, then N.
const SandboxFreezePrefix = "BenchmarkSandboxFreeze/workloads="

// ConcurrencyPoint is the writer-observed pause and the storage's cut at
// one number of backups at once, in milliseconds; NaN where the benchmark
// did not report the figure.
type ConcurrencyPoint struct {
	Workloads          int
	PauseP50, PauseP99 float64
	CutP50             float64
}

// PauseVsConcurrency reads every BenchmarkSandboxFreeze/workloads=N of
// run that reported one of the plotted figures, whatever the sizes,
// ordered by N.
func PauseVsConcurrency(run *Run) []ConcurrencyPoint {
	var out []ConcurrencyPoint
	for name := range run.Results {
		rest, ok := strings.CutPrefix(name, SandboxFreezePrefix)
		if !ok {
			continue
		}
		n, err := strconv.Atoi(rest)
		if err != nil || n < 1 {
			continue
		}
		metric := func(unit string) float64 {
			if v, ok := run.Value(Metric{name, unit}); ok {
				return v
			}
			return math.NaN()
		}
		pt := ConcurrencyPoint{Workloads: n,
			PauseP50: metric("writer-pause-p50-ms"), PauseP99: metric("writer-pause-p99-ms"), CutP50: metric("cut-p50-ms")}
		if pt.hasFigure() {
			out = append(out, pt)
		}
	}
	slices.SortFunc(out, func(a, b ConcurrencyPoint) int { return a.Workloads - b.Workloads })
	return out
}

func (c ConcurrencyPoint) hasFigure() bool {
	return !math.IsNaN(c.PauseP50) || !math.IsNaN(c.PauseP99) || !math.IsNaN(c.CutP50)
}

// ConcurrencyTarget is an absolute target on the writer's pause p99 at one
// number of backups at once.
type ConcurrencyTarget struct {
	Workloads int
	P99Ms     float64
}

// ConcurrencyPlot draws the writer-observed pause against the number of
// backups at once (logarithmic), with the targets marked.
type ConcurrencyPlot struct {
	Title string
	// AloneFactor draws the relative target: at every size, the pause p99
	// at most this many times the p99 of one backup alone (0: none; not
	// drawn without a point at 1).
	AloneFactor float64
	// Targets are absolute targets, each drawn as a marker at its size.
	Targets []ConcurrencyTarget
	Width   int
	Height  int
}

var cutCol = color.RGBA{0x3b, 0x6e, 0xa8, 0xff}

// WritePNG draws pts, which must hold at least one point with a figure.
func (p ConcurrencyPlot) WritePNG(w io.Writer, pts []ConcurrencyPoint) error {
	if !slices.ContainsFunc(pts, ConcurrencyPoint.hasFigure) {
		return fmt.Errorf("plot pause against concurrency: no sandbox figures (%s<N>)", SandboxFreezePrefix)
	}
	if p.Width == 0 {
		p.Width, p.Height = 900, 480
	}
	alone := math.NaN()
	if i := slices.IndexFunc(pts, func(c ConcurrencyPoint) bool { return c.Workloads == 1 }); i >= 0 && p.AloneFactor > 0 {
		alone = p.AloneFactor * pts[i].PauseP99
	}

	// Scales: x is log10(workloads), padded so that a lone point is not on
	// an edge; y is linear from 0 to above the highest figure or target.
	xlo, xhi := math.Log10(float64(pts[0].Workloads)), math.Log10(float64(pts[len(pts)-1].Workloads))
	xlo, xhi = xlo-0.15*max(xhi-xlo, 1), xhi+0.15*max(xhi-xlo, 1)
	ymax := 0.0
	for _, c := range pts {
		for _, v := range []float64{c.PauseP50, c.PauseP99, c.CutP50} {
			if !math.IsNaN(v) {
				ymax = max(ymax, v)
			}
		}
	}
	if !math.IsNaN(alone) {
		ymax = max(ymax, alone)
	}
	for _, t := range p.Targets {
		ymax = max(ymax, t.P99Ms)
	}
	if ymax <= 0 {
		ymax = 1
	}
	ystep := niceStep(ymax * 1.1 / 6)
	ytop := math.Ceil(ymax*1.1/ystep) * ystep

	img := image.NewRGBA(image.Rect(0, 0, p.Width, p.Height))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	left, right, top, bottom := 70, p.Width-20, 40, p.Height-50
	xOf := func(n int) int {
		return left + int((math.Log10(float64(n))-xlo)/(xhi-xlo)*float64(right-left))
	}
	yOf := func(ms float64) int { return bottom - int(ms/ytop*float64(bottom-top)) }

	for v := 0.0; v <= ytop+1e-9; v += ystep {
		y := yOf(v)
		hline(img, left, right, y, grid)
		label(img, left-8, y+4, trim(v), true)
	}
	hline(img, left, right, bottom, ink)
	vline(img, left, top, bottom, ink)
	for _, c := range pts {
		x := xOf(c.Workloads)
		vline(img, x, bottom, bottom+5, ink)
		s := strconv.Itoa(c.Workloads)
		label(img, x-len(s)*7/2, bottom+18, s, false)
	}
	label(img, (left+right)/2-150, bottom+38, "backups at once (log scale); y: writer-observed pause (ms)", false)

	// Targets first, so that the measured lines are drawn over them.
	legend := 0
	entry := func(c color.Color, s string) {
		label(img, left+12, top+12+14*legend, s, false, c)
		legend++
	}
	if !math.IsNaN(alone) {
		dashedH(img, left, right, yOf(alone), tgtCol)
		entry(tgtCol, fmt.Sprintf("target: p99 <= %gx p99 alone = %.0f ms (dashed)", p.AloneFactor, alone))
	}
	for _, t := range p.Targets {
		x, y := xOf(t.Workloads), yOf(t.P99Ms)
		for d := -6; d <= 6; d++ { // an X at the target
			img.Set(x+d, y+d, tgtCol)
			img.Set(x+d, y-d, tgtCol)
			img.Set(x+d+1, y+d, tgtCol)
			img.Set(x+d+1, y-d, tgtCol)
		}
		entry(tgtCol, fmt.Sprintf("target: p99 <= %.0f ms at %d (X)", t.P99Ms, t.Workloads))
	}
	series := func(name string, c color.Color, of func(ConcurrencyPoint) float64) {
		var px, py int
		started := false
		for _, pt := range pts {
			v := of(pt)
			if math.IsNaN(v) {
				continue
			}
			x, y := xOf(pt.Workloads), yOf(v)
			draw.Draw(img, image.Rect(x-3, y-3, x+4, y+4), &image.Uniform{c}, image.Point{}, draw.Src)
			if started {
				line(img, px, py, x, y, c)
			}
			px, py, started = x, y, true
		}
		if started {
			entry(c, name)
		}
	}
	series("writer pause p99", p99Col, func(c ConcurrencyPoint) float64 { return c.PauseP99 })
	series("writer pause p50", p50Col, func(c ConcurrencyPoint) float64 { return c.PauseP50 })
	series("snapshot cut p50", cutCol, func(c ConcurrencyPoint) float64 { return c.CutP50 })
	label(img, left, 20, p.Title, false)
	if err := png.Encode(w, img); err != nil {
		return fmt.Errorf("plot pause against concurrency: %w", err)
	}
	return nil
}

// line draws a two-pixel-thick straight line from (x0, y0) to (x1, y1).
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.Color) {
	steps := max(abs(x1-x0), abs(y1-y0), 1)
	for i := 0; i <= steps; i++ {
		x := x0 + (x1-x0)*i/steps
		y := y0 + (y1-y0)*i/steps
		img.Set(x, y, c)
		img.Set(x, y+1, c)
	}
}

func dashedH(img *image.RGBA, x0, x1, y int, c color.Color) {
	for x := x0; x <= x1; x++ {
		if (x/6)%2 == 0 {
			img.Set(x, y, c)
			img.Set(x, y+1, c)
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
