package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
)

func cmdRestore(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, connect connectSnapshots) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf connectFlags
	addConnectFlags(fs, &cf, events.RoleOperator)
	toNamespace := fs.String("to-namespace", "", "make the claims in this namespace, which must exist (default: the backup's own)")
	suffix := fs.String("name-suffix", "", "append this to each claim's name (default: none into another namespace; -restore-<end of the backup id> into the backup's own)")
	inPlace := fs.Bool("in-place", false, "replace the workload's own claims: scale it to 0, set their volumes to Retain, delete them, make them again from the snapshots, scale it back up (asks first unless --yes)")
	yes := fs.Bool("yes", false, "with --in-place, do not ask for confirmation")
	allow := fs.Bool("allow-inconsistent", false, "restore a backup that is not consistent (failed, unlocked, in flight, or its snapshots not ready)")
	wait := fs.Bool("wait", false, "wait until every claim is bound and print each; exit 0 when restored, 1 when the restore failed")
	timeout := fs.Duration("timeout", 15*time.Minute, "with --wait, give up after this long (exit 3)")
	id := fs.String("id", "", "restore id (default: a new one); requesting an id again is a no-op")
	checkCluster := fs.Bool("snapshots", true, "check the backup's snapshots in the cluster (kubeconfig) before asking; false: take the events' word for them")
	kubeconfig := fs.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster whose snapshots to check ($KUBECONFIG; empty: ~/.kube/config, else in-cluster)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: freezeframe restore BACKUP_ID [--to-namespace NS] [--name-suffix S] [--wait] [flags]
       freezeframe restore BACKUP_ID --in-place [--yes] [--wait] [flags]

Makes one PersistentVolumeClaim per snapshot of the backup (every member of
a group snapshot, together), its dataSource the VolumeSnapshot. Into another
namespace, each snapshot is first copied there as a pre-provisioned
VolumeSnapshot (its content naming the same storage snapshot, Retain). The
snapshotter does the work on a RestoreRequested event and answers with
Restored (each claim bound) or RestoreFailed; both show in "freezeframe
events" and in Slack. A backup that is not consistent (see "freezeframe
backups") is refused unless --allow-inconsistent. Claim names are
deterministic: asking again finds the claims already made.

--in-place replaces the workload's own claims instead: the snapshotter
records the workload's replicas on it, sets each claim's volume to reclaim
policy Retain, scales the workload to 0 and waits for its pods to go,
deletes the claims, makes them again under the same names from the
snapshots, waits until they are bound and scales the workload back up. The
old volumes are kept (Released) until you delete them; a failure before the
claims are deleted scales the workload back up, one after leaves it at 0
replicas (docs/restore.md says how to roll back). Needs the chart's
snapshotter.inPlaceRestore=true. Flags:
`)
		fs.PrintDefaults()
	}
	backupID, err := parseWithPositional(fs, args)
	if err != nil {
		return err
	}
	if err := events.ValidateBackupID(backupID); err != nil {
		return err
	}
	var lister events.SnapshotLister
	if *checkCluster {
		api, err := connect(*kubeconfig)
		if err != nil {
			return fmt.Errorf("%w (--snapshots=false takes the events' word for the snapshots)", err)
		}
		lister = clusterSnapshots{api: api}
	}
	client, closeConn, err := cf.client(ctx)
	if err != nil {
		return err
	}
	defer closeConn()

	b, err := findBackup(ctx, client, cf.cluster, backupID, lister)
	if err != nil {
		return err
	}
	if *id == "" {
		*id = events.NewRestoreID()
	}
	if *inPlace && ((*toNamespace != "" && *toNamespace != b.Workload.Namespace) || *suffix != "") {
		return errors.New("--in-place remakes the workload's own claims: it takes neither --to-namespace nor --name-suffix")
	}
	req, err := restoreRequest(b, *id, *toNamespace, *suffix, *allow, *inPlace)
	if err != nil {
		return err
	}
	req.RequestedBy = "cli"
	if *inPlace && !*yes {
		var claims []string
		for _, v := range req.Volumes {
			claims = append(claims, v.PVC)
		}
		fmt.Fprintf(stdout, "Restore backup %s in place? %s will be scaled to 0; its claims %s will be deleted (their volumes kept, Retain) and made again from the backup's snapshots; then it is scaled back up. [y/N] ",
			backupID, b.Workload, strings.Join(claims, ", "))
		answer, _ := bufio.NewReader(stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			fmt.Fprintln(stdout, "not restored")
			return exitError{1}
		}
	}
	ev, err := client.RequestRestore(ctx, req)
	if err != nil {
		return err
	}
	r := ev.Payload.(*events.RestoreRequested)
	fmt.Fprintf(stdout, "restore %s of backup %s (%s, %s) requested: %d claim(s) in namespace %s\n",
		r.RestoreID, backupID, b.Workload, b.Outcome, len(r.Volumes), r.Target())
	for _, v := range r.Volumes {
		fmt.Fprintf(stdout, "  %s ← %s (pvc %s)\n", v.Claim, v.Snapshot, v.PVC)
	}
	if !*wait {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	sawSteps := false
	last, err := client.WaitRestore(wctx, backupID, r.RestoreID, func(ev events.Event) {
		sawSteps = sawSteps || ev.Kind() == events.KindRestoreStep
		if ev.Kind() != events.KindRestoreRequested {
			fmt.Fprintf(stdout, "%s  %-16s %s\n", ev.Time().Local().Format("15:04:05.000"), ev.Kind(), describe(ev))
		}
	})
	if err != nil {
		fmt.Fprintf(stderr, "freezeframe: %v\n", err)
		return exitError{3}
	}
	switch p := last.Payload.(type) {
	case *events.Restored:
		printSteps(stdout, p.Steps, p.KeptVolumes, sawSteps)
		for _, c := range p.Claims {
			fmt.Fprintf(stdout, "  %s\n", claimLine(c))
		}
		fmt.Fprintf(stdout, "restore %s succeeded in %s\n", r.RestoreID, round(p.Took.Std()))
		return nil
	case *events.RestoreFailed:
		printSteps(stdout, p.Steps, p.KeptVolumes, sawSteps)
		fmt.Fprintf(stdout, "restore %s FAILED\n", r.RestoreID)
		return exitError{1}
	default:
		fmt.Fprintf(stdout, "restore %s FAILED\n", r.RestoreID)
		return exitError{1}
	}
}

// findBackup reads backup id from the catalog of its workload.
func findBackup(ctx context.Context, client *events.Client, cluster, id string, lister events.SnapshotLister) (events.CatalogBackup, error) {
	evs, err := client.List(ctx, events.Filter{Cluster: cluster, BackupID: id}, events.SubscribeOptions{FromStart: true})
	if err != nil {
		return events.CatalogBackup{}, err
	}
	if len(evs) == 0 {
		return events.CatalogBackup{}, fmt.Errorf("backup %s: no events in cluster %q (mistyped, another --cluster, or older than the stream keeps)", id, cluster)
	}
	w := evs[0].Workload()
	cat, err := client.Backups(ctx, events.BackupsFilter{Cluster: w.Cluster, Namespace: w.Namespace, WorkloadKind: w.Kind, Name: w.Name}, lister)
	if err != nil {
		return events.CatalogBackup{}, err
	}
	for _, wb := range cat.Workloads {
		for _, b := range wb.Backups {
			if b.BackupID == id {
				return b, nil
			}
		}
	}
	return events.CatalogBackup{}, fmt.Errorf("backup %s of %s: not in the catalog", id, w)
}

// errNotRestorable is a backup refused without --allow-inconsistent.
var errNotRestorable = errors.New("not restorable")

// restoreRequest is the request that restores b: one claim per volume
// snapshot, named by RestoreClaimName.
//
// In place, each claim is the workload's own (its PVC's name, in its
// namespace).
func restoreRequest(b events.CatalogBackup, restoreID, toNamespace, suffix string, allow, inPlace bool) (events.RestoreRequested, error) {
	req := events.RestoreRequested{BackupRef: events.BackupRef{BackupID: b.BackupID, Workload: b.Workload}, RestoreID: restoreID, TargetNamespace: toNamespace,
		AllowInconsistent: allow, Mode: b.Mode, InPlace: inPlace}
	if toNamespace == b.Workload.Namespace {
		req.TargetNamespace = ""
	}
	if req.TargetNamespace == "" && suffix == "" && !inPlace {
		suffix = defaultSuffix(b.BackupID)
	}
	req.NameSuffix = suffix
	var notReady []string
	for _, s := range b.Snapshots {
		switch {
		case s.Kind == events.SnapshotKindGroup:
			req.Group = s.Name
			continue
		case s.Kind != events.SnapshotKindVolume || s.PVC == "":
			continue
		}
		if s.State != events.SnapshotStateReady || s.Name == "" {
			notReady = append(notReady, fmt.Sprintf("%s (pvc %s) is %s", orDash(s.Name), s.PVC, s.State))
			continue
		}
		req.Volumes = append(req.Volumes, events.RestoreVolume{PVC: s.PVC, Snapshot: s.Name, Claim: events.RestoreClaimName(s.PVC, suffix), RestoreSize: s.RestoreSize})
	}
	var why []string
	if b.Outcome != events.OutcomeConsistent {
		w := "it is " + string(b.Outcome)
		if b.Step != "" {
			w += " at step " + b.Step + ": " + b.Reason
		}
		why = append(why, w)
	}
	why = append(why, notReady...)
	if len(req.Volumes) == 0 {
		return req, fmt.Errorf("backup %s: %w: no snapshot ready to restore (%s)", b.BackupID, errNotRestorable, strings.Join(why, "; "))
	}
	if len(why) > 0 && !allow {
		return req, fmt.Errorf("backup %s: %w: %s (--allow-inconsistent restores what there is)", b.BackupID, errNotRestorable, strings.Join(why, "; "))
	}
	return req, req.Validate()
}

// defaultSuffix names claims restored next to the ones they were cut from:
// "-restore-" and the last eight letters or digits of the backup id (the
// random end of a generated id).
func defaultSuffix(backupID string) string {
	var tail []byte
	for i := len(backupID) - 1; i >= 0 && len(tail) < 8; i-- {
		c := backupID[i]
		switch {
		case 'A' <= c && c <= 'Z':
			tail = append(tail, c+'a'-'A')
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
			tail = append(tail, c)
		}
	}
	for i, j := 0, len(tail)-1; i < j; i, j = i+1, j-1 {
		tail[i], tail[j] = tail[j], tail[i]
	}
	return "-restore-" + string(tail)
}

// claimLine says where one restored claim stands.
func claimLine(c events.RestoredClaim) string {
	switch {
	case c.WaitsForConsumer:
		return fmt.Sprintf("%s/%s from %s (pvc %s): created; its StorageClass binds it when a pod uses it", c.Namespace, c.Name, c.Snapshot, c.PVC)
	case c.Volume == "":
		return fmt.Sprintf("%s/%s from %s (pvc %s): not bound", c.Namespace, c.Name, c.Snapshot, c.PVC)
	}
	return fmt.Sprintf("%s/%s bound to %s (%s) from %s (pvc %s)", c.Namespace, c.Name, c.Volume, orDash(c.Capacity), c.Snapshot, c.PVC)
}

// printSteps prints the steps of an in-place restore (unless they were
// printed as they happened), and the old volumes it kept.
func printSteps(w io.Writer, steps []events.RestoreStep, kept []string, printed bool) {
	for _, st := range steps {
		if printed {
			break
		}
		fmt.Fprintf(w, "  %s  %-15s %s\n", st.At.Local().Format("15:04:05.000"), st.Step, st.Detail)
	}
	if len(kept) > 0 {
		fmt.Fprintf(w, "  old volumes kept (Retain, delete them when done): %s\n", strings.Join(kept, ", "))
	}
}
