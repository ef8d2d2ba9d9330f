package freeze

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/workload"
)

// Design: a hook execs only where its workload lives.
//
// Whoever may write a Blueprint (a tenant, when namespaced blueprints are
// allowed) or request a backup must not reach the hooker's pods/exec right
// in other workloads' pods. So every exec target a blueprint names is
// checked against the workload being backed up: a pod in its namespace
// that its selector selects. Anything else needs an entry in the exec
// allow-list, which the platform team sets in the hooker's own
// configuration (HOOKER_EXEC_ALLOW, chart value hooker.execAllow): the
// same chart value grants the hooker pods/exec in those namespaces, so the
// list and the RBAC never disagree, and widening it is a reviewed change to
// freezeframe's own release, not a write any tenant can make.
//
// Targets are checked twice: while planning, before anything is frozen
// (phases whose targets come from an earlier phase's output are left to
// the second check), and again just before each exec, against the pod as
// it is then (a pod can be replaced, relabelled or deleted meanwhile). The
// post-hook's targets that the plan vouched for are not read again: they
// resume what this backup froze, and a read there is frozen time.

// ErrExecNotAllowed matches an *ExecNotAllowedError.
var ErrExecNotAllowed = errors.New("exec target not allowed")

// ExecNotAllowedError says which pod a hook wanted, why it may not exec
// there, and how the platform team can allow it.
type ExecNotAllowedError struct {
	Phase     string
	Namespace string
	Pod       string
	// Workload is the workload being backed up.
	Workload events.Workload
	// Why is what the check found: "not selected by its selector", "does
	// not exist", ...
	Why string
}

func (e *ExecNotAllowedError) Error() string {
	return fmt.Sprintf("%s: phase %s targets pod %s/%s, which is not a pod of %s: %s. A hook may exec only into the pods of the workload it backs up; "+
		"to allow this one, the platform team adds %q to the hooker's exec allow-list (HOOKER_EXEC_ALLOW, chart value hooker.execAllow)",
		ErrExecNotAllowed, e.Phase, e.Namespace, e.Pod, e.Workload, e.Why, e.Namespace+":<label selector of that pod>")
}

func (e *ExecNotAllowedError) Unwrap() error { return ErrExecNotAllowed }

// ExecAllowEntry allows hooks to exec into the pods of Namespace that
// Selector selects, whatever workload they back up.
type ExecAllowEntry struct {
	Namespace string
	Selector  labels.Selector
}

// ExecAllowList is the platform team's widening of where hooks may exec. A
// struct rather than a slice, so that --help does not call it a
// comma-separated list: entries are separated by ";".
type ExecAllowList struct {
	Entries []ExecAllowEntry
}

// ParseExecAllowList reads HOOKER_EXEC_ALLOW: entries separated by ";",
// each "namespace:label selector" (the selector in kubectl's syntax, e.g.
// "db-tools:app=backup-agent;ops:team=dba,tier in (tools)"). A selector is
// required: a whole namespace is allowed only by a selector that every pod
// there matches, written on purpose.
func ParseExecAllowList(s string) (ExecAllowList, error) {
	var out ExecAllowList
	var errs []error
	for _, entry := range strings.Split(s, ";") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		ns, sel, ok := strings.Cut(entry, ":")
		ns, sel = strings.TrimSpace(ns), strings.TrimSpace(sel)
		if !ok || sel == "" {
			errs = append(errs, fmt.Errorf("%q: want namespace:label selector, e.g. db-tools:app=backup-agent", entry))
			continue
		}
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("%q: %q is not a namespace name: %s", entry, ns, strings.Join(msgs, "; ")))
			continue
		}
		selector, err := labels.Parse(sel)
		if err != nil {
			errs = append(errs, fmt.Errorf("%q: label selector: %w", entry, err))
			continue
		}
		out.Entries = append(out.Entries, ExecAllowEntry{Namespace: ns, Selector: selector})
	}
	if err := errors.Join(errs...); err != nil {
		return ExecAllowList{}, fmt.Errorf("exec allow-list (HOOKER_EXEC_ALLOW): %w", err)
	}
	return out, nil
}

// Decode reads HOOKER_EXEC_ALLOW (envconfig.Decoder).
func (l *ExecAllowList) Decode(s string) error {
	parsed, err := ParseExecAllowList(s)
	if err != nil {
		return err
	}
	*l = parsed
	return nil
}

// allows reports whether an entry covers the pod.
func (l ExecAllowList) allows(pod *corev1.Pod) bool {
	for _, e := range l.Entries {
		if e.Namespace == pod.Namespace && e.Selector.Matches(labels.Set(pod.Labels)) {
			return true
		}
	}
	return false
}

// String lists the entries as HOOKER_EXEC_ALLOW writes them, for the log.
func (l ExecAllowList) String() string {
	parts := make([]string, len(l.Entries))
	for i, e := range l.Entries {
		parts[i] = e.Namespace + ":" + e.Selector.String()
	}
	return strings.Join(parts, ";")
}

// execScope is where one backup's hooks may exec: its workload's pods, and
// the allow-list.
type execScope struct {
	workload  events.Workload
	namespace string
	selector  labels.Selector
	// planned are the workload's running pods as resolved for this backup.
	planned map[string]bool
}

func scopeOf(ref events.Workload, info *workload.Info) execScope {
	sc := execScope{workload: ref, namespace: info.Namespace, selector: info.Selector, planned: make(map[string]bool, len(info.Pods))}
	if sc.selector == nil {
		sc.selector = labels.Nothing()
	}
	for _, p := range info.Pods {
		sc.planned[p.Name] = true
	}
	return sc
}

// checkTarget returns nil when a hook of phase may exec into namespace/pod.
// trustPlan accepts the workload's pods resolved for this backup without
// reading them again (while planning, and for the post-hook, which resumes
// what the pre-hook froze); otherwise the pod is read, since it may have
// changed since. A refusal is a permanent *ExecNotAllowedError, logged; a failed
// read of the pod is returned as is (transient).
func (s *Service) checkTarget(ctx context.Context, p *plan, phase, namespace, pod string, trustPlan bool) error {
	sc := p.scope
	if trustPlan && namespace == sc.namespace && sc.planned[pod] {
		return nil
	}
	refuse := func(why string) error {
		err := &ExecNotAllowedError{Phase: phase, Namespace: namespace, Pod: pod, Workload: sc.workload, Why: why}
		s.log.WarnContext(ctx, "hook exec target refused", "backup_id", p.ref.BackupID, "workload", sc.workload.String(),
			"blueprint", p.blueprint, "phase", phase, "target_namespace", namespace, "target_pod", pod, "why", why)
		return events.Permanent(err)
	}
	if s.pods == nil {
		return refuse("the hooker cannot read pods to check")
	}
	obj, err := s.pods.Pod(ctx, namespace, pod)
	switch {
	case apierrors.IsNotFound(err):
		return refuse("no such pod")
	case apierrors.IsForbidden(err):
		return refuse("the hooker may not read pods in namespace " + namespace)
	case err != nil:
		return fmt.Errorf("check hook target %s/%s: %w", namespace, pod, err)
	}
	if obj.DeletionTimestamp != nil {
		return refuse("the pod is being deleted")
	}
	if namespace == sc.namespace && sc.selector != nil && sc.selector.Matches(labels.Set(obj.Labels)) {
		return nil
	}
	if s.execAllow.allows(obj) {
		return nil
	}
	if namespace != sc.namespace {
		return refuse("another namespace, and no allow-list entry selects it")
	}
	selector := "(none)"
	if sc.selector != nil {
		selector = sc.selector.String()
	}
	return refuse("not selected by the workload's selector " + selector + ", and no allow-list entry selects it")
}
