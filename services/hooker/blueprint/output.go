package blueprint

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
)

// OutputMarker starts a phase-output line, as written by `kando output key
// value`: ###Phase-output###: {"key":"k","value":"v"}
const OutputMarker = "###Phase-output###:"

// Kanister's rule for output keys, which keeps them usable as
// .Phases.<phase>.Output.<key>.
var outputKey = regexp.MustCompile(`^[a-zA-Z0-9_]+$`)

// ParseOutput extracts phase output from a command's stdout: every line
// containing OutputMarker (anywhere, so a prefix added by a logger does not
// hide it) contributes a key; a later line wins for a repeated key. Other
// lines are ignored. The result is never nil.
//
// A malformed output line is an error (as in Kanister) whose message gives
// the line number but not the line: output often carries credentials.
//
// stdout is what podexec captured: at most 64 KiB by default, the head and
// the tail of the command's output cut at line ends, so output lines
// printed last (as kando does) survive a chatty hook; the line noting what
// was dropped carries no marker and is ignored like any other.
func ParseOutput(stdout []byte) (map[string]any, error) {
	out := map[string]any{}
	marker := []byte(OutputMarker)
	for i, line := range bytes.Split(stdout, []byte("\n")) {
		at := bytes.Index(line, marker)
		if at < 0 {
			continue
		}
		field := fmt.Sprintf("stdout line %d", i+1)
		payload := bytes.TrimSpace(line[at+len(marker):])
		var kv struct {
			Key   *string `json:"key"`
			Value *string `json:"value"`
		}
		if err := json.Unmarshal(payload, &kv); err != nil {
			return nil, &Error{Field: field, Err: kindErr(ErrOutput, `want {"key":"...","value":"..."} after `+OutputMarker)}
		}
		if kv.Key == nil || kv.Value == nil {
			return nil, &Error{Field: field, Err: kindErr(ErrOutput, `want both "key" and "value"`)}
		}
		if !outputKey.MatchString(*kv.Key) {
			return nil, &Error{Field: field, Err: kindErr(ErrOutput, "key must be letters, digits and underscores")}
		}
		out[*kv.Key] = *kv.Value
	}
	return out, nil
}
