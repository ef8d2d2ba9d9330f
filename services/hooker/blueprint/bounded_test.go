package blueprint

import (
	"errors"
	"strings"
	"testing"

	"github.com/Masterminds/sprig/v3"
)

// Rendering is bounded however big the numbers in a request's options:
// each case fails with a template error naming the limit, and nothing
// allocates past it on the way.
func TestRenderIsBounded(t *testing.T) {
	tests := []struct {
		name     string
		template string
		n        string // .Options.n
		wantErr  string
	}{
		{"repeat from an option", `{{ repeat (atoi .Options.n) "x" }}`, "1000000000000", "repeat: 1000000000000 copies of 1 bytes: over 65536 bytes"},
		{"negative repeat", `{{ repeat (atoi .Options.n) "x" }}`, "-1", "repeat: -1 copies"},
		{"indent", `{{ indent (atoi .Options.n) "a\nb" }}`, "100000", "indent: 100000 spaces on 2 lines"},
		{"nindent", `{{ nindent (atoi .Options.n) "a" }}`, "-3", "nindent: -3 spaces"},
		{"until", `{{ range until (atoi .Options.n) }}{{ end }}`, "100000000", "until: 100000000 items: over 10000"},
		{"until down", `{{ range until (atoi .Options.n) }}{{ end }}`, "-100000000", "until: 100000000 items"},
		{"untilStep", `{{ range untilStep 0 (atoi .Options.n) 1 }}{{ end }}`, "9223372036854775807", "untilStep: 9223372036854775807 items"},
		{"seq", `{{ seq (atoi .Options.n) }}`, "100000000", "seq: 100000000 items"},
		{"random text", `{{ randAlpha (atoi .Options.n) }}`, "1000000000", "randAlpha: 1000000000 characters"},
		{"random bytes", `{{ randBytes (atoi .Options.n) }}`, "1000000000", "randBytes: 1000000000 bytes"},
		{"output past the limit", `{{ range until (atoi .Options.n) }}xxxxxxxxxx{{ end }}`, "10000", "renders more than 65536 bytes"},
		{"a value doubled in a loop", `{{ $s := "ab" }}{{ range until (atoi .Options.n) }}{{ $s = cat $s $s }}{{ end }}`, "100", "cat: result of"},
		{"a list doubled in a loop", `{{ $l := list 1 }}{{ range until (atoi .Options.n) }}{{ $l = concat $l $l }}{{ end }}`, "100", "concat: result of 16384 items: over 10000"},
		{"printf builds the string first", `{{ printf "%s%s" (repeat 40000 "a") (repeat 40000 "b") }}`, "0", "renders more than 65536 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testParams()
			p.Options = map[string]string{"n": tt.n}
			_, err := phaseWithArgs(map[string]any{"v": tt.template}).RenderArgs(p)
			if !errors.Is(err, ErrTemplate) {
				t.Fatalf("err %v, want ErrTemplate", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err %q, want it to say %q", err, tt.wantErr)
			}
		})
	}
}

// Within the limits the bounded functions give what sprig gives.
func TestBoundedFunctionsKeepTheirResults(t *testing.T) {
	tests := []struct{ template, want string }{
		{`{{ repeat 3 "ab" }}`, "ababab"},
		{`{{ repeat 0 "ab" }}`, ""},
		{`{{ indent 2 "a\nb" }}`, "  a\n  b"},
		{`{{ nindent 1 "a" }}`, "\n a"},
		{`{{ until 3 }}`, "[0 1 2]"},
		{`{{ until -2 }}`, "[0 -1]"},
		{`{{ untilStep 0 10 3 }}`, "[0 3 6 9]"},
		{`{{ seq 5 }}`, "1 2 3 4 5"},
		{`{{ seq 3 1 }}`, "3 2 1"},
		{`{{ seq 0 2 6 }}`, "0 2 4 6"},
		{`{{ len (randAlphaNum 12) }}`, "12"},
		{`{{ len (list 1 2 3) }}`, "3"},
		{`{{ "x" | upper }}`, "X"},
		{`{{ repeat 4 "a" | len }}`, "4"},
	}
	for _, tt := range tests {
		got, err := phaseWithArgs(map[string]any{"v": tt.template}).RenderArgs(testParams())
		if err != nil {
			t.Errorf("%s: %v", tt.template, err)
			continue
		}
		if got["v"] != tt.want {
			t.Errorf("%s = %q, want %q", tt.template, got["v"], tt.want)
		}
	}
}

// The pre-call counts agree with what sprig's own functions build.
func TestStepCountsMatchSprig(t *testing.T) {
	raw := sprig.TxtFuncMap()
	untilStep := raw["untilStep"].(func(int, int, int) []int)
	seq := raw["seq"].(func(...int) string)
	count := func(s string) uint64 {
		if s == "" {
			return 0
		}
		return uint64(len(strings.Fields(s)))
	}
	for a := -12; a <= 12; a++ {
		for b := -12; b <= 12; b++ {
			if got, want := seqLength([]int{a, b}), count(seq(a, b)); got != want {
				t.Errorf("seqLength(%d, %d) = %d, sprig prints %d", a, b, got, want)
			}
			if got, want := seqLength([]int{a}), count(seq(a)); got != want {
				t.Errorf("seqLength(%d) = %d, sprig prints %d", a, got, want)
			}
			for c := -5; c <= 5; c++ {
				if got, want := steps(a, b, c), uint64(len(untilStep(a, b, c))); got != want {
					t.Errorf("steps(%d, %d, %d) = %d, sprig makes %d", a, b, c, got, want)
				}
				if got, want := seqLength([]int{a, c, b}), count(seq(a, c, b)); got != want {
					t.Errorf("seqLength(%d, %d, %d) = %d, sprig prints %d", a, c, b, got, want)
				}
			}
		}
	}
}

func TestKeyGeneratorsAreNotOffered(t *testing.T) {
	for _, f := range []string{"genPrivateKey", "genCA", "genSelfSignedCert", "genSignedCert"} {
		_, err := phaseWithArgs(map[string]any{"v": "{{ " + f + " }}"}).RenderArgs(testParams())
		if !errors.Is(err, ErrTemplate) || !strings.Contains(err.Error(), "not defined") {
			t.Errorf("%s: err %v, want a template error saying it is not defined", f, err)
		}
	}
}
