package events

import (
	"regexp"
	"strings"
	"testing"
)

// The byte loops accept exactly what the patterns of the contract say.
func TestNameChecksMatchPatterns(t *testing.T) {
	label := regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	subdomain := regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	backupID := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)
	inputs := []string{"", "a", "-", "a-", "-a", "a-b", "a--b", "A", "aB", "0", "a.b", "a..b", ".a", "a.", "a.-b", "a-.b",
		"redis.cache", "bk-01a2135d-721c-7568", "bk_1", "_bk", "bk_", "bk-", "a b", "ä", "a/b", "a_b",
		strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", 128), strings.Repeat("a", 129),
		strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61),
		strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 62),
		strings.Repeat("a.", 126) + "a"}
	for _, s := range inputs {
		if got, want := isDNSLabel(s), label.MatchString(s) && len(s) <= 63; got != want {
			t.Errorf("isDNSLabel(%q) = %v, want %v", s, got, want)
		}
		if got, want := isDNSSubdomain(s), subdomain.MatchString(s) && len(s) <= 253; got != want {
			t.Errorf("isDNSSubdomain(%q) = %v, want %v", s, got, want)
		}
		if got, want := isBackupID(s), backupID.MatchString(s); got != want {
			t.Errorf("isBackupID(%q) = %v, want %v", s, got, want)
		}
	}
}
