package events

import (
	"fmt"
	"strings"
)

// SubjectRoot is the first two tokens of every backup event subject.
const SubjectRoot = "freezeframe.backup"

// subjectToken writes a Kubernetes name as one NATS subject token: dots
// become underscores, which Kubernetes names cannot contain.
func subjectToken(s string) string { return strings.ReplaceAll(s, ".", "_") }

// Subject is the subject an event of kind k for backup ref is published on.
func Subject(k Kind, ref BackupRef) string {
	return SubjectRoot + "." + string(k) + "." + ref.Workload.Key() + "." + ref.BackupID
}

// Filter selects backup events; an empty field matches anything.
type Filter struct {
	Kinds     []Kind
	Cluster   string
	Namespace string
	// WorkloadKind is Deployment or StatefulSet (any case or short form).
	WorkloadKind string
	Name         string
	BackupID     string
}

// Subjects returns the NATS filter subjects that select exactly f: one per
// kind, or one wildcard subject when f names no kind.
func (f Filter) Subjects() ([]string, error) {
	tok := func(s string) string {
		if s == "" {
			return "*"
		}
		return subjectToken(s)
	}
	kind := "*"
	if f.WorkloadKind != "" {
		k, err := NormalizeKind(f.WorkloadKind)
		if err != nil {
			return nil, err
		}
		kind = strings.ToLower(k)
	}
	if f.BackupID != "" {
		if err := ValidateBackupID(f.BackupID); err != nil {
			return nil, err
		}
	}
	rest := strings.Join([]string{tok(f.Cluster), tok(f.Namespace), kind, tok(f.Name), tok(f.BackupID)}, ".")
	if len(f.Kinds) == 0 {
		return []string{SubjectRoot + ".*." + rest}, nil
	}
	subjects := make([]string, 0, len(f.Kinds))
	for _, k := range f.Kinds {
		if _, ok := kindByType[typeOfKind(k)]; !ok {
			return nil, fmt.Errorf("event kind %q: unknown", k)
		}
		subjects = append(subjects, SubjectRoot+"."+string(k)+"."+rest)
	}
	return subjects, nil
}

func typeOfKind(k Kind) string {
	for t, kk := range kindByType {
		if kk == k {
			return t
		}
	}
	return ""
}

// ParseKind reads an event kind as typed on a command line.
func ParseKind(s string) (Kind, error) {
	k := Kind(strings.ToLower(s))
	if typeOfKind(k) == "" {
		return "", fmt.Errorf("event kind %q: want one of %v", s, Kinds())
	}
	return k, nil
}
