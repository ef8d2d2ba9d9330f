package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// Labels on every VolumeSnapshot the snapshotter creates. Label values are
// limited to 63 characters, so a longer backup id or workload name is cut
// and suffixed with a hash (see labelValue); AnnotationBackupID keeps the
// backup id whole.
const (
	LabelBackupID      = "freezeframe.io/backup-id"
	LabelWorkloadKind  = "freezeframe.io/workload-kind"
	LabelWorkloadName  = "freezeframe.io/workload-name"
	LabelManagedBy     = "app.kubernetes.io/managed-by"
	AnnotationBackupID = "freezeframe.io/backup-id"
)

const maxNameLen = 63

// SnapshotName is the VolumeSnapshot name for one claim of one backup:
// "ff-<hash of backup id and claim>-<claim, cut to fit>", at most 63
// characters. It is deterministic, so a retried backup finds its snapshots
// again, and the hash keeps two backups of one claim apart however the claim
// name is cut.
func SnapshotName(backupID, pvc string) string {
	prefix := "ff-" + shortHash(backupID+"/"+pvc) + "-"
	rest := pvc
	if len(prefix)+len(rest) > maxNameLen {
		rest = rest[:maxNameLen-len(prefix)]
	}
	// A claim is a DNS subdomain; only the cut can leave a '-' or '.' at the end.
	return strings.TrimRight(prefix+strings.TrimRight(rest, "-."), "-")
}

// LabelValue is how s appears as a label value on the snapshots: itself
// when it is a valid label value, else cut and suffixed with a hash. Use it
// to select a backup's snapshots by LabelBackupID.
func LabelValue(s string) string {
	if len(validation.IsValidLabelValue(s)) == 0 {
		return s
	}
	h := shortHash(s)
	keep := s
	if len(keep) > validation.LabelValueMaxLength-len(h)-1 {
		keep = keep[:validation.LabelValueMaxLength-len(h)-1]
	}
	keep = strings.TrimRight(keep, "-_.")
	if keep == "" {
		return h
	}
	return keep + "-" + h
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:5])
}

// newSnapshot is the VolumeSnapshot of claim pvc for backup ref; a nil class
// leaves the choice to the cluster's default class for the claim's driver.
func newSnapshot(ref events.BackupRef, kind, pvc string, class *string) *snapv1.VolumeSnapshot {
	return &snapv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{
			Name:        SnapshotName(ref.BackupID, pvc),
			Namespace:   ref.Workload.Namespace,
			Labels:      ownLabels(ref, kind),
			Annotations: map[string]string{AnnotationBackupID: ref.BackupID},
		},
		Spec: snapv1.VolumeSnapshotSpec{
			Source:                  snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvc},
			VolumeSnapshotClassName: class,
		},
	}
}

// ownLabels are the labels on every snapshot and group snapshot of a
// backup: the watch selects by them, retention groups by them.
func ownLabels(ref events.BackupRef, kind string) map[string]string {
	return map[string]string{
		LabelBackupID:     LabelValue(ref.BackupID),
		LabelWorkloadKind: kind,
		LabelWorkloadName: LabelValue(ref.Workload.Name),
		LabelManagedBy:    "freezeframe",
	}
}

// ownedBy reports whether an existing snapshot is the one this backup would
// have created for pvc, so that AlreadyExists can be taken as our own work.
func ownedBy(s *snapv1.VolumeSnapshot, backupID, pvc string) bool {
	src := s.Spec.Source.PersistentVolumeClaimName
	return s.Labels[LabelBackupID] == LabelValue(backupID) && src != nil && *src == pvc
}
