package chaos

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable prints one line per result: fault, step, restart, the
// writer-observed freeze, hook runs, and "ok" or the violated invariants
// (n/a: what could not be checked because a service stayed down).
func WriteTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tFAULT\tSTEP\tRESTART\tFROZEN FOR (WRITER)\tHOOKS\tINVARIANTS")
	failed := 0
	for i, r := range results {
		restart := "no"
		if r.Row.Restart {
			restart = "yes"
		}
		if r.Row.kind == kindRedeliver || r.Row.kind == kindHoldCut {
			restart = "-"
		}
		verdict := "ok"
		switch {
		case r.Err != nil:
			verdict = "ERROR: " + oneLine(r.Err.Error())
		case len(r.Violations) > 0:
			verdict = "VIOLATED: " + strings.Join(r.Violations, "; ")
		}
		if !r.OK() {
			failed++
		}
		if len(r.NA) > 0 {
			verdict += " (n/a: " + strings.Join(r.NA, ", ") + ")"
		}
		frozen := "-"
		if r.FrozenFor > 0 {
			frozen = r.FrozenFor.Round(10 * time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", i+1, r.Row.Fault(), r.Row.Step, restart, frozen, orDash(r.Hooks), verdict)
	}
	fmt.Fprintf(tw, "\n%d rows, %d ok, %d failed\n", len(results), len(results)-failed, failed)
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
