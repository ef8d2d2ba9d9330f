package snapshot

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestSnapshotName(t *testing.T) {
	long := strings.Repeat("a", 60) + ".b-c"
	tests := []struct {
		backupID, pvc string
		wantSuffix    string
	}{
		{"bk-1", "data", "-data"},
		{"bk-1", "data-db-0", "-data-db-0"},
		{"bk-1", long, "-" + strings.Repeat("a", 49)},
		{"bk-1", strings.Repeat("a", 48) + "-xyz", "-" + strings.Repeat("a", 48)}, // no '-' left at the cut
		{"bk-1", strings.Repeat("a", 48) + ".xyz", "-" + strings.Repeat("a", 48)}, // nor '.'
	}
	for _, tt := range tests {
		t.Run(tt.pvc, func(t *testing.T) {
			got := SnapshotName(tt.backupID, tt.pvc)
			if len(got) > 63 {
				t.Errorf("%q: %d characters", got, len(got))
			}
			if errs := validation.IsDNS1123Subdomain(got); len(errs) > 0 {
				t.Errorf("%q: %v", got, errs)
			}
			if !strings.HasPrefix(got, "ff-") || !strings.HasSuffix(got, tt.wantSuffix) {
				t.Errorf("%q: want ff-<hash>%s", got, tt.wantSuffix)
			}
			if again := SnapshotName(tt.backupID, tt.pvc); again != got {
				t.Errorf("not deterministic: %q then %q", got, again)
			}
			if other := SnapshotName(tt.backupID+"x", tt.pvc); other == got {
				t.Errorf("backups %q and %q share the name %q", tt.backupID, tt.backupID+"x", got)
			}
		})
	}
	// Two claims that agree up to the cut still get two names.
	if a, b := SnapshotName("bk", long+"1"), SnapshotName("bk", long+"2"); a == b {
		t.Errorf("claims cut to the same prefix share the name %q", a)
	}
}

func TestLabelValue(t *testing.T) {
	tests := []struct {
		in       string
		keepSame bool
	}{
		{"bk-0192c6f4-5d7e-7a1b-9c3d-2e4f6a8b0c1d", true},
		{"db", true},
		{"ends-with-dash-", false},
		{strings.Repeat("x", 64), false},
		{strings.Repeat("a.", 100) + "b", false},
	}
	for _, tt := range tests {
		got := LabelValue(tt.in)
		if errs := validation.IsValidLabelValue(got); len(errs) > 0 {
			t.Errorf("LabelValue(%q) = %q: %v", tt.in, got, errs)
		}
		if (got == tt.in) != tt.keepSame {
			t.Errorf("LabelValue(%q) = %q, want it kept: %v", tt.in, got, tt.keepSame)
		}
		if LabelValue(tt.in+"y") == got {
			t.Errorf("LabelValue(%q) and LabelValue(%q) collide", tt.in, tt.in+"y")
		}
	}
}
