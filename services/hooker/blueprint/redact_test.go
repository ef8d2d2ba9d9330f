package blueprint

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRedact(t *testing.T) {
	const pw = `p@ss"wörd\`
	quoted := strconv.Quote(pw)
	_, timeErr := time.Parse("2006", pw)

	tests := []struct {
		name    string
		s       string
		secrets [][]byte
		want    string
	}{
		{"no secrets", "mongosh -p x", nil, "mongosh -p x"},
		{"empty secret ignored", "abc", [][]byte{{}}, "abc"},
		{"raw, every occurrence", "-p hunter2 && echo hunter2", [][]byte{[]byte("hunter2")}, "-p [REDACTED] && echo [REDACTED]"},
		{"base64 padded", "data: " + base64.StdEncoding.EncodeToString([]byte("hunter2")), [][]byte{[]byte("hunter2")}, "data: [REDACTED]"},
		{"base64 unpadded", "x" + base64.RawStdEncoding.EncodeToString([]byte("hunter2")) + "y", [][]byte{[]byte("hunter2")}, "x[REDACTED]y"},
		{"base64 URL alphabet", base64.URLEncoding.EncodeToString([]byte("??>>??")), [][]byte{[]byte("??>>??")}, "[REDACTED]"},
		{"hex", "0x" + hex.EncodeToString([]byte("hunter2")), [][]byte{[]byte("hunter2")}, "0x[REDACTED]"},
		{"Go-quoted", "key " + quoted, [][]byte{[]byte(pw)}, `key "[REDACTED]"`},
		{"ASCII-quoted", "key " + strconv.QuoteToASCII(pw), [][]byte{[]byte(pw)}, `key "[REDACTED]"`},
		{"time package quoting", timeErr.Error(), [][]byte{[]byte(pw)}, `parsing time "[REDACTED]" as "2006": cannot parse "[REDACTED]" as "2006"`},
		{"JSON-escaped", `{"p":"a\u003cb\u0026c\"\u0001"}`, [][]byte{[]byte("a<b&c\"\x01")}, `{"p":"[REDACTED]"}`},
		{"JSON-escaped without HTML escapes", `{"p":"a<b&c\"\u0001"}`, [][]byte{[]byte("a<b&c\"\x01")}, `{"p":"[REDACTED]"}`},
		{"URL-escaped", "https://u:p%40ss%2Fx@host", [][]byte{[]byte("p@ss/x")}, "https://u:[REDACTED]@host"},
		{"printed as bytes", "got " + fmt.Sprint([]byte("abc")), [][]byte{[]byte("abc")}, "got [REDACTED]"},
		{"trailing newline of the secret", "-p hunter2 ok", [][]byte{[]byte("hunter2\n")}, "-p [REDACTED] ok"},
		{"overlapping secrets leave no fragment", "xabcdy", [][]byte{[]byte("ab"), []byte("bcd")}, "x[REDACTED]y"},
		{"secret inside another", "--pw=supersecret", [][]byte{[]byte("secret"), []byte("supersecret")}, "--pw=[REDACTED]"},
		{"adjacent occurrences merge", "aaaa", [][]byte{[]byte("aa")}, "[REDACTED]"},
		{"multi-line output", "line1\nPASSWORD=s3cr3t\nline3", [][]byte{[]byte("s3cr3t")}, "line1\nPASSWORD=[REDACTED]\nline3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Redact(tt.s, tt.secrets); got != tt.want {
				t.Errorf("Redact(%q) = %q, want %q", tt.s, got, tt.want)
			}
		})
	}
}

// A rendered command logged through Redact with Params.SecretValues shows no
// password.
func TestRedactRenderedCommand(t *testing.T) {
	bp := mustParseFile(t, "mongo-hooks.yaml")
	params := Params{
		StatefulSet: &WorkloadParams{Name: "mongodb", Namespace: "shop", Pods: []string{"mongodb-0"}},
		Phases:      map[string]*PhaseParams{},
	}
	_, args, _ := runMongoPhase(t, mustAction(t, bp, ActionPrehook).Phases[0], params)
	logged := Redact(fmt.Sprint(args["command"]), params.SecretValues())
	if strings.Contains(logged, mongoPassword) || !strings.Contains(logged, "MONGODB_ROOT_PASSWORD='[REDACTED]'") {
		t.Errorf("logged command: %s", logged)
	}
}
