package blueprint

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseOutput(t *testing.T) {
	tests := []struct {
		name   string
		stdout string
		want   map[string]any
	}{
		{"none", "locked\n{ ok: 1 }\n", map[string]any{}},
		{"empty", "", map[string]any{}},
		{"one", "###Phase-output###: {\"key\":\"lockedAt\",\"value\":\"2026-03-14T15:09:26Z\"}\n", map[string]any{"lockedAt": "2026-03-14T15:09:26Z"}},
		{
			name: "among other lines, CRLF, logger prefix",
			stdout: "connecting\r\n" +
				"###Phase-output###: {\"key\":\"a\",\"value\":\"1\"}\r\n" +
				"time=... msg=\"out\" ###Phase-output###: {\"key\":\"b_2\",\"value\":\"two words\"}\n" +
				"bye",
			want: map[string]any{"a": "1", "b_2": "two words"},
		},
		{"last wins", "###Phase-output###: {\"key\":\"k\",\"value\":\"old\"}\n###Phase-output###: {\"key\":\"k\",\"value\":\"new\"}", map[string]any{"k": "new"}},
		{"empty value", "###Phase-output###: {\"key\":\"k\",\"value\":\"\"}", map[string]any{"k": ""}},
		{"escaped JSON value", `###Phase-output###: {"key":"json","value":"{\"a\":[1,2]}\n"}`, map[string]any{"json": "{\"a\":[1,2]}\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseOutput([]byte(tt.stdout))
			if err != nil {
				t.Fatalf("ParseOutput: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestParseOutputErrors(t *testing.T) {
	const secret = "hunter2"
	tests := []struct {
		name    string
		stdout  string
		wantMsg string
	}{
		{"not JSON", "ok\n###Phase-output###: key=" + secret, `stdout line 2: want {"key":"...","value":"..."} after ###Phase-output###:`},
		{"value not a string", `###Phase-output###: {"key":"n","value":42}`, `stdout line 1: want {"key":"...","value":"..."} after ###Phase-output###:`},
		{"no value", `###Phase-output###: {"key":"k"}`, `stdout line 1: want both "key" and "value"`},
		{"bad key", `###Phase-output###: {"key":"a-b","value":"` + secret + `"}`, "stdout line 1: key must be letters, digits and underscores"},
		{"empty key", `###Phase-output###: {"key":"","value":"v"}`, "stdout line 1: key must be letters, digits and underscores"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseOutput([]byte(tt.stdout))
			if !errors.Is(err, ErrOutput) {
				t.Fatalf("err = %v, want ErrOutput", err)
			}
			if err.Error() != tt.wantMsg {
				t.Errorf("err = %q, want %q", err, tt.wantMsg)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error quotes output: %v", err)
			}
		})
	}
}
