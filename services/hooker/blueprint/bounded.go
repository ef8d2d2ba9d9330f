package blueprint

import (
	"reflect"
	"strings"
	"text/template"
)

// bounded makes every function in fm refuse to build more than the limits
// (see funcMap). A result is checked after the call: a string or bytes
// longer than MaxRenderedSize, a list or map of more than MaxListLength
// items is an error, so that a template cannot grow a value in a loop
// ({{ $s = cat $s $s }}) while writing nothing. Functions whose result
// grows with a number argument are checked before the call as well, since
// the call itself would allocate the result. Errors are ownErrors: they
// quote numbers, never values.
func bounded(fm template.FuncMap) {
	defer func() {
		for name, f := range fm {
			fm[name] = limitResult(name, f)
		}
	}()
	repeat := fm["repeat"].(func(int, string) string)
	fm["repeat"] = func(count int, s string) (string, error) {
		if count < 0 || (len(s) > 0 && count > MaxRenderedSize/len(s)) {
			return "", ownErrorf("repeat: %d copies of %d bytes: over %d bytes", count, len(s), MaxRenderedSize)
		}
		return repeat(count, s), nil
	}
	for _, name := range []string{"indent", "nindent"} {
		f := fm[name].(func(int, string) string)
		fm[name] = func(spaces int, s string) (string, error) {
			lines := strings.Count(s, "\n") + 1
			if spaces < 0 || spaces > MaxRenderedSize/lines {
				return "", ownErrorf("%s: %d spaces on %d lines: over %d bytes", name, spaces, lines, MaxRenderedSize)
			}
			return f(spaces, s), nil
		}
	}
	for _, name := range []string{"randAlphaNum", "randAlpha", "randAscii", "randNumeric"} {
		f := fm[name].(func(int) string)
		fm[name] = func(n int) (string, error) {
			if n < 0 || n > MaxRenderedSize {
				return "", ownErrorf("%s: %d characters: want 0 to %d", name, n, MaxRenderedSize)
			}
			return f(n), nil
		}
	}
	randBytes := fm["randBytes"].(func(int) (string, error))
	fm["randBytes"] = func(n int) (string, error) {
		if n < 0 || n > MaxRenderedSize {
			return "", ownErrorf("randBytes: %d bytes: want 0 to %d", n, MaxRenderedSize)
		}
		return randBytes(n)
	}
	until := fm["until"].(func(int) []int)
	fm["until"] = func(count int) ([]int, error) {
		step := 1
		if count < 0 {
			step = -1
		}
		if n := steps(0, count, step); n > MaxListLength {
			return nil, ownErrorf("until: %d items: over %d", n, MaxListLength)
		}
		return until(count), nil
	}
	untilStep := fm["untilStep"].(func(int, int, int) []int)
	fm["untilStep"] = func(start, stop, step int) ([]int, error) {
		if n := steps(start, stop, step); n > MaxListLength {
			return nil, ownErrorf("untilStep: %d items: over %d", n, MaxListLength)
		}
		return untilStep(start, stop, step), nil
	}
	seq := fm["seq"].(func(...int) string)
	fm["seq"] = func(params ...int) (string, error) {
		if n := seqLength(params); n > MaxListLength {
			return "", ownErrorf("seq: %d items: over %d", n, MaxListLength)
		}
		return seq(params...), nil
	}
}

// steps is how many items sprig's untilStep(start, stop, step) makes:
// from start towards stop, stop excluded, when step goes that way. It
// counts in uint64 so that no int overflows on the way.
func steps(start, stop, step int) uint64 {
	switch {
	case start < stop && step > 0:
		return ceilDiv(uint64(stop)-uint64(start), uint64(step))
	case start > stop && step < 0:
		// Two's complement: the magnitude, even of math.MinInt.
		return ceilDiv(uint64(start)-uint64(stop), -uint64(step))
	}
	return 0
}

func ceilDiv(a, b uint64) uint64 {
	n := a / b
	if a%b != 0 {
		n++
	}
	return n
}

// seqLength is how many numbers sprig's seq prints for params, following
// its own translation to untilStep.
func seqLength(params []int) uint64 {
	switch len(params) {
	case 1:
		inc := 1
		if params[0] < 1 {
			inc = -1
		}
		return steps(1, params[0]+inc, inc)
	case 2:
		inc := 1
		if params[1] < params[0] {
			inc = -1
		}
		return steps(params[0], params[1]+inc, inc)
	case 3:
		start, step, end := params[0], params[1], params[2]
		inc := 1
		if end < start {
			inc = -1
			if step > 0 {
				return 0
			}
		}
		return steps(start, end+inc, step)
	}
	return 0
}

var errorType = reflect.TypeFor[error]()

// limitResult wraps f so that a result over the limits becomes an error.
// Functions with one result return it by panicking, which the template
// engine turns into the call's error.
func limitResult(name string, f any) any {
	fv := reflect.ValueOf(f)
	ft := fv.Type()
	if ft.Kind() != reflect.Func || ft.NumOut() == 0 || !mayGrow(ft.Out(0)) {
		return f
	}
	withErr := ft.NumOut() == 2 && ft.Out(1) == errorType
	return reflect.MakeFunc(ft, func(args []reflect.Value) []reflect.Value {
		var out []reflect.Value
		if ft.IsVariadic() {
			out = fv.CallSlice(args)
		} else {
			out = fv.Call(args)
		}
		if err := overLimit(name, out[0]); err != nil {
			if !withErr {
				panic(err)
			}
			return []reflect.Value{reflect.Zero(ft.Out(0)), reflect.ValueOf(&err).Elem()}
		}
		return out
	}).Interface()
}

// mayGrow reports whether a result of type t can be large.
func mayGrow(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.String, reflect.Slice, reflect.Map, reflect.Interface:
		return true
	}
	return false
}

func overLimit(name string, v reflect.Value) error {
	for v.Kind() == reflect.Interface && !v.IsNil() {
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.String:
		if v.Len() > MaxRenderedSize {
			return ownErrorf("%s: result of %d bytes: over %d", name, v.Len(), MaxRenderedSize)
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			if v.Len() > MaxRenderedSize {
				return ownErrorf("%s: result of %d bytes: over %d", name, v.Len(), MaxRenderedSize)
			}
		} else if v.Len() > MaxListLength {
			return ownErrorf("%s: result of %d items: over %d", name, v.Len(), MaxListLength)
		}
	case reflect.Map:
		if v.Len() > MaxListLength {
			return ownErrorf("%s: result of %d items: over %d", name, v.Len(), MaxListLength)
		}
	}
	return nil
}
