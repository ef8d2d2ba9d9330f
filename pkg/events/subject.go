package events

import (
	"errors"
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

// ErrBadSubject is returned by ParseSubject for a subject that is not one
// of a backup event: wrong root, wrong number of tokens, an unknown event or
// workload kind, or a token that is not a valid name.
var ErrBadSubject = errors.New("not a backup event subject")

// subjectTokens is the number of tokens after SubjectRoot: event kind,
// cluster, namespace, workload kind, name, backup id.
const subjectTokens = 6

// ParseSubject reads a backup event subject, the inverse of Subject: the
// event kind and the backup it names. The workload kind comes back in its
// canonical spelling (Deployment, StatefulSet) and dots are restored in the
// name. Errors wrap ErrBadSubject and quote at most the offending token.
func ParseSubject(subject string) (Kind, BackupRef, error) {
	rest, ok := strings.CutPrefix(subject, SubjectRoot+".")
	if !ok {
		return "", BackupRef{}, fmt.Errorf("parse subject: %w: want prefix %s.", ErrBadSubject, SubjectRoot)
	}
	var tok [subjectTokens]string
	for i := range tok {
		if i == subjectTokens-1 {
			tok[i], rest = rest, ""
		} else {
			var found bool
			if tok[i], rest, found = strings.Cut(rest, "."); !found {
				return "", BackupRef{}, fmt.Errorf("parse subject: %w: %d tokens after %s, want %d", ErrBadSubject, i+1, SubjectRoot, subjectTokens)
			}
		}
	}
	if strings.Contains(tok[subjectTokens-1], ".") {
		return "", BackupRef{}, fmt.Errorf("parse subject: %w: more than %d tokens after %s", ErrBadSubject, subjectTokens, SubjectRoot)
	}
	k := Kind(tok[0])
	if typeOfKind(k) == "" {
		return "", BackupRef{}, fmt.Errorf("parse subject: %w: event kind %q unknown", ErrBadSubject, short(tok[0]))
	}
	w := Workload{Cluster: tok[1], Namespace: tok[2], Name: strings.ReplaceAll(tok[4], "_", ".")}
	if !isLower(tok[3]) {
		return "", BackupRef{}, fmt.Errorf("parse subject: %w: workload kind %q not lower-case", ErrBadSubject, short(tok[3]))
	}
	kind, err := NormalizeKind(tok[3])
	if err != nil {
		return "", BackupRef{}, fmt.Errorf("parse subject: %w: workload kind %q unknown", ErrBadSubject, short(tok[3]))
	}
	w.Kind = kind
	// Underscores stand for dots, which Kubernetes names may hold and
	// subject tokens may not.
	if !isDNSSubdomain(w.Name) {
		return "", BackupRef{}, fmt.Errorf("parse subject: %w: workload name %q invalid", ErrBadSubject, short(tok[4]))
	}
	switch {
	case !isDNSLabel(w.Cluster):
		return "", BackupRef{}, fmt.Errorf("parse subject: %w: cluster %q invalid", ErrBadSubject, short(tok[1]))
	case !isDNSLabel(w.Namespace):
		return "", BackupRef{}, fmt.Errorf("parse subject: %w: namespace %q invalid", ErrBadSubject, short(tok[2]))
	case !isBackupID(tok[5]):
		return "", BackupRef{}, fmt.Errorf("parse subject: %w: backup id %q invalid", ErrBadSubject, short(tok[5]))
	}
	return k, BackupRef{BackupID: tok[5], Workload: w}, nil
}

// short bounds what an error quotes of untrusted input.
func short(s string) string { return truncate(s, 64) }
