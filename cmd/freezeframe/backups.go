package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	groupv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumegroupsnapshot/v1"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	groupclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/typed/volumegroupsnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/typed/volumesnapshot/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/workload"
	"github.com/freezeframe/freezeframe/services/snapshotter/snapshot"
)

// snapshotAPI is the part of the external-snapshotter clientset the catalog
// reads: versioned.Interface, or its fake.
type snapshotAPI interface {
	SnapshotV1() snapclient.SnapshotV1Interface
	GroupsnapshotV1() groupclient.GroupsnapshotV1Interface
}

// connectSnapshots opens the snapshot API of the cluster a kubeconfig names.
type connectSnapshots func(kubeconfig string) (snapshotAPI, error)

// kubeSnapshots is connectSnapshots for a real cluster: the kubeconfig
// given, else $KUBECONFIG or ~/.kube/config, else the pod's service account.
func kubeSnapshots(kubeconfig string) (snapshotAPI, error) {
	rc, err := workload.RESTConfig(workload.ClientConfig{Kubeconfig: kubeconfig})
	if err != nil {
		return nil, err
	}
	api, err := versioned.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("snapshot client: %w", err)
	}
	return api, nil
}

func cmdBackups(ctx context.Context, args []string, stdout, stderr io.Writer, connect connectSnapshots) error {
	fs := flag.NewFlagSet("backups", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf connectFlags
	addConnectFlags(fs, &cf, events.RoleOperator)
	namespace := fs.String("n", "", "only this namespace (default: all)")
	workloadRef := fs.String("workload", "", "only this workload, as KIND/NAME")
	output := fs.String("o", "table", "output: table or json")
	checkCluster := fs.Bool("snapshots", true, "check every snapshot in the cluster (kubeconfig); false: take the events' word for them")
	kubeconfig := fs.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster whose snapshots to check ($KUBECONFIG; empty: ~/.kube/config, else in-cluster)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: freezeframe backups [-n NAMESPACE] [--workload KIND/NAME] [-o table|json]

Every backup of each workload, newest first: when it was requested, how it
ended (consistent, cut but not ready yet, failed and why, in flight; an
unlock that forced the resume), how long the application was frozen, its
snapshots and whether the cluster still has them ready (missing: deleted
by hand), and what retention does with it when the next backup is ready
(keep, prune-next, discard-next, not-counted; pruned, gone). It joins the
events, the freeze ends in the freezeframe-backups bucket (which decide
success) and the VolumeSnapshots in the cluster. Flags:
`)
		fs.PrintDefaults()
	}
	if err := parseNoPositional(fs, args); err != nil {
		return err
	}
	if err := checkOutput(*output); err != nil {
		return err
	}
	f := events.BackupsFilter{Cluster: cf.cluster, Namespace: *namespace}
	if *workloadRef != "" {
		kind, name, err := events.ParseWorkloadRef(*workloadRef)
		if err != nil {
			return err
		}
		f.WorkloadKind, f.Name = kind, name
	}
	var lister events.SnapshotLister
	if *checkCluster {
		api, err := connect(*kubeconfig)
		if err != nil {
			return fmt.Errorf("%w (--snapshots=false lists the backups from the events alone)", err)
		}
		lister = clusterSnapshots{api: api}
	}
	client, closeConn, err := cf.client(ctx)
	if err != nil {
		return err
	}
	defer closeConn()
	cat, err := client.Backups(ctx, f, lister)
	if err != nil {
		return err
	}
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(cat)
	}
	return printCatalog(stdout, cat)
}

func printCatalog(out io.Writer, cat events.Catalog) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	if len(cat.Workloads) == 0 {
		fmt.Fprintln(tw, "no backups")
	}
	for i, wb := range cat.Workloads {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		keep := "keeps every backup"
		if wb.SnapshotsToKeep > 0 {
			keep = fmt.Sprintf("keeps %d complete backups", wb.SnapshotsToKeep)
		}
		fmt.Fprintf(tw, "%s (%s)\n", shortWorkload(wb.Workload), keep)
		fmt.Fprintln(tw, "  BACKUP\tREQUESTED\tRESULT\tFROZEN\tSNAPSHOTS\tRETENTION\tDETAIL")
		for _, b := range wb.Backups {
			requested := "-"
			if !b.RequestedAt.IsZero() {
				requested = b.RequestedAt.Local().Format("2006-01-02 15:04:05")
			}
			result := string(b.Outcome)
			if b.Unlock != nil {
				result += " (unlocked)"
			}
			frozen := "-"
			if b.FrozenFor > 0 {
				frozen = round(b.FrozenFor.Std()).String()
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", b.BackupID, requested, result, frozen, snapshotList(b.Snapshots), b.Retention, catalogDetail(b))
		}
	}
	if !cat.ClusterChecked && len(cat.Workloads) > 0 {
		fmt.Fprintln(tw, "\nsnapshots as the events say: not checked against the cluster (--snapshots=false)")
	}
	return tw.Flush()
}

// snapshotList names each snapshot with its state: "name state, ...".
func snapshotList(snaps []events.CatalogSnapshot) string {
	if len(snaps) == 0 {
		return "-"
	}
	parts := make([]string, len(snaps))
	for i, s := range snaps {
		name := s.Name
		if name == "" {
			name = s.PVC + "→?"
		}
		if s.Kind == events.SnapshotKindGroup {
			name = "group " + name
		}
		parts[i] = name + " " + string(s.State)
	}
	return strings.Join(parts, ", ")
}

// catalogDetail says why a backup failed and who unlocked it.
func catalogDetail(b events.CatalogBackup) string {
	var parts []string
	if b.Outcome == events.OutcomeFailed {
		s := b.Reason
		if b.Step != "" {
			s = b.Step + " failed: " + s
		}
		parts = append(parts, s)
	}
	if u := b.Unlock; u != nil {
		parts = append(parts, fmt.Sprintf("resume forced by %s (%s)", orDash(u.By), u.Reason))
	}
	return orDash(strings.Join(parts, "; "))
}

// clusterSnapshots lists freezeframe's snapshots through the snapshot API,
// for events.Client.Backups: every VolumeSnapshot and VolumeGroupSnapshot
// labelled with the backup id.
type clusterSnapshots struct{ api snapshotAPI }

var _ events.SnapshotLister = clusterSnapshots{}

func (c clusterSnapshots) ListSnapshots(ctx context.Context, namespace string) ([]events.ClusterSnapshot, error) {
	selector := metav1.ListOptions{LabelSelector: snapshot.LabelBackupID}
	vs, err := c.api.SnapshotV1().VolumeSnapshots(namespace).List(ctx, selector)
	if err != nil {
		return nil, fmt.Errorf("list volumesnapshots: %w", err)
	}
	var out []events.ClusterSnapshot
	for i := range vs.Items {
		out = append(out, volumeSnapshotOf(&vs.Items[i]))
	}
	gs, err := c.api.GroupsnapshotV1().VolumeGroupSnapshots(namespace).List(ctx, selector)
	switch {
	case apierrors.IsNotFound(err):
		// The cluster serves no group snapshot API: none were cut.
	case err != nil:
		return nil, fmt.Errorf("list volumegroupsnapshots: %w", err)
	default:
		for i := range gs.Items {
			out = append(out, groupSnapshotOf(&gs.Items[i]))
		}
	}
	return out, nil
}

// owned reads what the snapshotter wrote on a snapshot it made.
func owned(m metav1.ObjectMeta, kind string) events.ClusterSnapshot {
	id := m.Annotations[snapshot.AnnotationBackupID]
	if id == "" {
		id = m.Labels[snapshot.LabelBackupID] // whole unless longer than a label value
	}
	return events.ClusterSnapshot{Kind: kind, Namespace: m.Namespace, Name: m.Name, BackupID: id,
		WorkloadKind: m.Labels[snapshot.LabelWorkloadKind], WorkloadName: m.Labels[snapshot.LabelWorkloadName], Deleting: m.DeletionTimestamp != nil}
}

func volumeSnapshotOf(vs *snapv1.VolumeSnapshot) events.ClusterSnapshot {
	s := owned(vs.ObjectMeta, events.SnapshotKindVolume)
	if vs.Spec.Source.PersistentVolumeClaimName != nil {
		s.PVC = *vs.Spec.Source.PersistentVolumeClaimName
	}
	for _, o := range vs.OwnerReferences {
		if o.Kind == "VolumeGroupSnapshot" {
			s.Group = o.Name
		}
	}
	if st := vs.Status; st != nil {
		if st.CreationTime != nil {
			s.CutAt = st.CreationTime.Time
		}
		s.ReadyToUse = st.ReadyToUse != nil && *st.ReadyToUse
		if st.RestoreSize != nil {
			s.RestoreSize = st.RestoreSize.String()
		}
		s.Error = snapshotError(st.Error)
	}
	return s
}

func groupSnapshotOf(g *groupv1.VolumeGroupSnapshot) events.ClusterSnapshot {
	s := owned(g.ObjectMeta, events.SnapshotKindGroup)
	if st := g.Status; st != nil {
		if st.CreationTime != nil {
			s.CutAt = st.CreationTime.Time
		}
		s.ReadyToUse = st.ReadyToUse != nil && *st.ReadyToUse
		s.Error = snapshotError(st.Error)
	}
	return s
}

func snapshotError(e *snapv1.VolumeSnapshotError) string {
	switch {
	case e == nil:
		return ""
	case e.Message != nil && *e.Message != "":
		return *e.Message
	}
	return "no message"
}
