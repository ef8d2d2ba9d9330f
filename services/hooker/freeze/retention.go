package freeze

import (
	"context"
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/workload"
)

// Retention deletes backups, so who may set it is decided by Kubernetes
// objects, not by the bus: a request's snapshotsToKeep is honoured only when
// the scheduler sent it for a BackupPolicy that exists, selects the
// workload and says the same number. Anything else (a request from the CLI
// or the Go client, a forged request naming a policy) is ignored: the
// workload's freezeframe.io/snapshots-to-keep annotation, then the
// snapshotter's default, apply, and the Quiesced says why in
// RetentionIgnored.

// RetentionPolicy is what the hooker reads of a BackupPolicy.
type RetentionPolicy struct {
	Namespace, Name string
	Selection       workload.PolicySelection
	SnapshotsToKeep int
}

// PolicySource reads a BackupPolicy (*KubePolicies). A policy that does not
// exist is an error matching apierrors.IsNotFound.
type PolicySource interface {
	Policy(ctx context.Context, namespace, name string) (RetentionPolicy, error)
}

// KubePolicies reads BackupPolicies with a dynamic client: the hooker needs
// only get on backuppolicies.
type KubePolicies struct{ client dynamic.Interface }

// NewKubePolicies reads policies through client.
func NewKubePolicies(client dynamic.Interface) KubePolicies { return KubePolicies{client: client} }

// Policy reads the BackupPolicy namespace/name.
func (k KubePolicies) Policy(ctx context.Context, namespace, name string) (RetentionPolicy, error) {
	u, err := k.client.Resource(workload.BackupPolicyResource).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return RetentionPolicy{}, fmt.Errorf("get BackupPolicy %s/%s: %w", namespace, name, err)
	}
	var p struct {
		Spec struct {
			Selection       workload.PolicySelection `json:"selection"`
			SnapshotsToKeep int                      `json:"snapshotsToKeep"`
		} `json:"spec"`
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p); err != nil {
		return RetentionPolicy{}, fmt.Errorf("read BackupPolicy %s/%s: %w", namespace, name, err)
	}
	return RetentionPolicy{Namespace: namespace, Name: name, Selection: p.Spec.Selection, SnapshotsToKeep: p.Spec.SnapshotsToKeep}, nil
}

// errRetentionUnverified marks why a request's retention cannot be trusted;
// its text goes into Quiesced.RetentionIgnored.
var errRetentionUnverified = errors.New("retention is set by a BackupPolicy or the workload's " + workload.AnnotationSnapshotsToKeep + " annotation")

// trustedRetention returns the snapshotsToKeep of req to apply (zero: the
// workload's annotation, then the snapshotter's default) and, when the
// request asked for one it may not set, why it was ignored. An error is one
// reading the policy that a retry may get past.
func (s *Service) trustedRetention(ctx context.Context, req *events.BackupRequested, source string, info *workload.Info) (keep int, ignored string, err error) {
	if req.SnapshotsToKeep == 0 {
		return 0, "", nil
	}
	why := s.verifyRetention(ctx, req, source, info)
	if why == nil {
		return req.SnapshotsToKeep, "", nil
	}
	if !errors.Is(why, errRetentionUnverified) {
		return 0, "", why
	}
	by := source
	if req.RequestedBy != "" {
		by = req.RequestedBy + " via " + source
	}
	return 0, fmt.Sprintf("snapshotsToKeep %d from %s: %v", req.SnapshotsToKeep, by, why), nil
}

// verifyRetention returns nil when the request's retention comes from a
// policy that says it, an error wrapping errRetentionUnverified when it
// does not, and any other error when the policy could not be read.
func (s *Service) verifyRetention(ctx context.Context, req *events.BackupRequested, source string, info *workload.Info) error {
	if source != events.RoleScheduler.Source() {
		return errRetentionUnverified
	}
	ref, ok := strings.CutPrefix(req.RequestedBy, "policy/")
	ns, name, ok2 := strings.Cut(ref, "/")
	if !ok || !ok2 || ns == "" || name == "" || strings.Contains(name, "/") {
		return errRetentionUnverified // an ad-hoc request the scheduler passed on
	}
	if s.policies == nil {
		return fmt.Errorf("%w (this hooker reads no BackupPolicies)", errRetentionUnverified)
	}
	p, err := s.policies.Policy(ctx, ns, name)
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%w: BackupPolicy %s/%s not found", errRetentionUnverified, ns, name)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%w: not allowed to read BackupPolicy %s/%s (the hooker needs get on backuppolicies)", errRetentionUnverified, ns, name)
	case err != nil:
		return err
	}
	selects, err := p.Selection.Selects(ns, info)
	switch {
	case err != nil:
		return fmt.Errorf("%w: BackupPolicy %s/%s: %v", errRetentionUnverified, ns, name, err)
	case !selects:
		return fmt.Errorf("%w: BackupPolicy %s/%s does not select %s %s/%s", errRetentionUnverified, ns, name, strings.ToLower(info.Kind), info.Namespace, info.Name)
	case p.SnapshotsToKeep != req.SnapshotsToKeep:
		return fmt.Errorf("%w: BackupPolicy %s/%s says snapshotsToKeep %d", errRetentionUnverified, ns, name, p.SnapshotsToKeep)
	}
	return nil
}
