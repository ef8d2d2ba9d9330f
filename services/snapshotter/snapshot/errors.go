package snapshot

import (
	"errors"
	"fmt"
	"net"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilnet "k8s.io/apimachinery/pkg/util/net"
)

var (
	// ErrNoPVCs is returned when the workload's running pods mount no
	// PersistentVolumeClaim: there is nothing to snapshot.
	ErrNoPVCs = errors.New("running pods mount no PersistentVolumeClaim")
	// ErrCutTimeout is returned when a snapshot is not cut within the
	// configured CutTimeout or before the freeze deadline.
	ErrCutTimeout = errors.New("snapshots not cut")
	// ErrNotOwned is returned when a VolumeSnapshot with the name this backup
	// would use exists but was made for another backup or claim.
	ErrNotOwned = errors.New("volumesnapshot exists but belongs to another backup or claim")
)

// SnapshotError is a VolumeSnapshot that failed before it was cut: its
// status reports an error, or it was deleted.
type SnapshotError struct {
	Namespace, Name, PVC string
	Message              string
}

func (e *SnapshotError) Error() string {
	return fmt.Sprintf("volumesnapshot %s/%s of pvc %s: %s", e.Namespace, e.Name, e.PVC, e.Message)
}

// transientError marks a failure that a retry may fix. It is set where the
// decision is made, so that a joined error is transient only when every
// part of it is.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

func isTransient(err error) bool {
	var t *transientError
	return errors.As(err, &t)
}

// transientAPI reports whether a Kubernetes API error is worth a retry: the
// server was busy or unreachable, not refusing the request.
func transientAPI(err error) bool {
	switch {
	case err == nil:
		return false
	case apierrors.IsTimeout(err), apierrors.IsServerTimeout(err), apierrors.IsTooManyRequests(err),
		apierrors.IsInternalError(err), apierrors.IsServiceUnavailable(err), apierrors.IsUnexpectedServerError(err):
		return true
	case utilnet.IsConnectionRefused(err), utilnet.IsConnectionReset(err), utilnet.IsProbableEOF(err):
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// classify marks err transient when the API call that returned it may
// succeed on a retry.
func classify(err error) error {
	if transientAPI(err) {
		return &transientError{err}
	}
	return err
}
