package report

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"time"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"

	"github.com/freezeframe/freezeframe/test/bench/stats"
)

// Histogram options.
type Histogram struct {
	Title string
	// Target draws a vertical line at this value (0: none).
	Target time.Duration
	Width  int
	Height int
	Bins   int
}

var (
	ink    = color.RGBA{0x22, 0x22, 0x22, 0xff}
	grid   = color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
	bar    = color.RGBA{0x3b, 0x6e, 0xa8, 0xff}
	p50Col = color.RGBA{0x2a, 0x9d, 0x3f, 0xff}
	p99Col = color.RGBA{0xe0, 0x8a, 0x00, 0xff}
	tgtCol = color.RGBA{0xc8, 0x20, 0x20, 0xff}
)

// WritePNG draws a histogram of samples in milliseconds with p50, p99 and
// the target marked. Samples above twice the p99 (or the target, if
// larger) go to the last bin, so that one outlier does not squash the rest.
func (h Histogram) WritePNG(w io.Writer, samples []time.Duration) error {
	if len(samples) == 0 {
		return fmt.Errorf("plot: no samples")
	}
	if h.Width == 0 {
		h.Width, h.Height = 900, 480
	}
	if h.Bins == 0 {
		h.Bins = 50
	}
	p50, p99 := stats.Percentile(samples, 50), stats.Percentile(samples, 99)
	lo := math.Min(0, stats.Millis(stats.Percentile(samples, 0.01)))
	hi := math.Max(stats.Millis(p99)*2, stats.Millis(h.Target)*1.2)
	if hi <= lo {
		hi = lo + 1
	}
	step := niceStep((hi - lo) / float64(h.Bins))
	lo = math.Floor(lo/step) * step
	bins := int(math.Ceil((hi - lo) / step))
	counts := make([]int, bins)
	for _, s := range samples {
		i := int((stats.Millis(s) - lo) / step)
		counts[min(max(i, 0), bins-1)]++
	}
	maxCount := 1
	for _, c := range counts {
		maxCount = max(maxCount, c)
	}

	img := image.NewRGBA(image.Rect(0, 0, h.Width, h.Height))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	left, right, top, bottom := 60, h.Width-20, 40, h.Height-50
	xOf := func(ms float64) int { return left + int((ms-lo)/(float64(bins)*step)*float64(right-left)) }
	yOf := func(c float64) int { return bottom - int(c/float64(maxCount)*float64(bottom-top)) }

	// Y ticks and grid.
	ystep := niceStep(float64(maxCount) / 5)
	for c := 0.0; c <= float64(maxCount); c += ystep {
		y := yOf(c)
		hline(img, left, right, y, grid)
		label(img, left-8, y+4, fmt.Sprintf("%g", c), true)
	}
	// Bars.
	for i, c := range counts {
		x0, x1 := xOf(lo+float64(i)*step)+1, xOf(lo+float64(i+1)*step)-1
		draw.Draw(img, image.Rect(x0, yOf(float64(c)), max(x1, x0+1), bottom), &image.Uniform{bar}, image.Point{}, draw.Src)
	}
	// Axes and X ticks.
	hline(img, left, right, bottom, ink)
	vline(img, left, top, bottom, ink)
	xstep := niceStep((float64(bins) * step) / 10)
	for v := lo; v <= lo+float64(bins)*step+1e-9; v += xstep {
		x := xOf(v)
		vline(img, x, bottom, bottom+5, ink)
		label(img, x-len(trim(v))*7/2, bottom+18, trim(v), false)
	}
	label(img, (left+right)/2-90, bottom+38, "freeze overhead (ms), last bin: overflow", false)
	// Markers.
	mark := func(d time.Duration, c color.Color, name string, row int) {
		label(img, right-150, top+12+14*row, fmt.Sprintf("%-6s %7.2f ms", name, stats.Millis(d)), false, c)
		if x := xOf(stats.Millis(d)); x >= left && x <= right {
			dashed(img, x, top, bottom, c)
		}
	}
	mark(p50, p50Col, "p50", 0)
	mark(p99, p99Col, "p99", 1)
	if h.Target > 0 {
		mark(h.Target, tgtCol, "target", 2)
	}
	mark(stats.Percentile(samples, 100), ink, "max", 3)
	label(img, left, 20, fmt.Sprintf("%s (n=%d)", h.Title, len(samples)), false)
	if err := png.Encode(w, img); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	return nil
}

// niceStep rounds x up to 1, 2 or 5 times a power of ten.
func niceStep(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

func trim(v float64) string { return fmt.Sprintf("%g", math.Round(v*1000)/1000) }

func hline(img *image.RGBA, x0, x1, y int, c color.Color) {
	for x := x0; x <= x1; x++ {
		img.Set(x, y, c)
	}
}

func vline(img *image.RGBA, x, y0, y1 int, c color.Color) {
	for y := y0; y <= y1; y++ {
		img.Set(x, y, c)
	}
}

func dashed(img *image.RGBA, x, y0, y1 int, c color.Color) {
	for y := y0; y <= y1; y++ {
		if (y/4)%2 == 0 {
			img.Set(x, y, c)
			img.Set(x+1, y, c)
		}
	}
}

// label draws s with its baseline at y, starting at x, or ending at x when
// alignRight.
func label(img *image.RGBA, x, y int, s string, alignRight bool, c ...color.Color) {
	col := color.Color(ink)
	if len(c) > 0 {
		col = c[0]
	}
	d := &font.Drawer{Dst: img, Src: image.NewUniform(col), Face: basicfont.Face7x13}
	if alignRight {
		x -= d.MeasureString(s).Round()
	}
	d.Dot = fixed.P(x, y)
	d.DrawString(s)
}
