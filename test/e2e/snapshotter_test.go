package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/test/e2e/deploy"
	"github.com/freezeframe/freezeframe/test/e2e/harness"
	"github.com/freezeframe/freezeframe/test/sandbox"
)

// What the snapshotter names, as users see it.
const (
	// labelBackupID is the label (and annotation) on every snapshot and group snapshot.
	labelBackupID = "freezeframe.io/backup-id"
	// snapshotterConsumer is the snapshotter's durable consumer of Quiesced events.
	snapshotterConsumer = "snapshotter"
)

// The storage uploads for 3s after the cut (a class with readyDelay): the application is
// resumed at the cut, and SnapshotReady comes once the upload is done.
func TestResumedAtTheCutReadyAfterTheUpload(t *testing.T) {
	t.Parallel()
	c := sandbox.Shared(t)
	app := &redisApp{Namespace: "ready-later", Name: "cache", Blueprint: "redis-hooks"}
	app.deploy(t)
	const class, upload = "e2e-upload-3s", 3 * time.Second
	if _, err := harness.Apply(t.Context(), c, fmt.Sprintf(`apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshotClass
metadata: {name: %s}
driver: %s
deletionPolicy: Delete
parameters: {readyDelay: %s}
`, class, sandbox.DriverName, upload)); err != nil {
		t.Fatal(err)
	}

	up := startUp(t)
	client := connect(t, up)
	_, evs := backupUntilReady(t, up, client, app, class)
	requireKinds(t, evs, events.KindRequested, events.KindQuiesced, events.KindSnapshotted, events.KindResumed, events.KindSnapshotReady)

	snapshotted, resumed, ready := evs[2], evs[3], evs[4]
	s, _ := harness.Payload[events.Snapshotted](evs)
	r, _ := harness.Payload[events.Resumed](evs)
	sr, _ := harness.Payload[events.SnapshotReady](evs)
	if !r.Succeeded || s.Mode != events.SnapshotModeVolume || len(sr.Snapshots) != 1 || sr.Snapshots[0].Name != s.Snapshots[0].Name {
		t.Fatalf("snapshotted %+v, resumed %+v, ready %+v", s, r, sr)
	}
	vs, err := c.Snapshots.SnapshotV1().VolumeSnapshots(app.Namespace).Get(t.Context(), sr.Snapshots[0].Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if vs.Status == nil || vs.Status.ReadyToUse == nil || !*vs.Status.ReadyToUse {
		t.Fatalf("volumesnapshot %s not ready when SnapshotReady came: %+v", vs.Name, vs.Status)
	}
	if sr.ReadyAfter.Std() < upload-time.Second {
		t.Errorf("ready %s after the cut, want about the class's %s upload", sr.ReadyAfter.Std(), upload)
	}
	t.Logf("resumed %s after the cut was seen (Snapshotted), frozen %s in all for a %s cut; snapshot ready %s after the cut, %s after the resume",
		resumed.Time().Sub(snapshotted.Time()), r.FrozenFor.Std(), s.CutDuration.Std(), sr.ReadyAfter.Std(), ready.Time().Sub(resumed.Time()))
	if err := redisWrite(t.Context(), app.Server, "after-backup", 5*time.Second); err != nil {
		t.Fatalf("redis not writable after the backup: %v", err)
	}
}

// Two volumes on the sandbox driver, which implements the CSI group controller: one
// VolumeGroupSnapshot cuts both at one instant. A Quiesced delivered again creates nothing
// more.
func TestTwoVolumesOneGroupSnapshot(t *testing.T) {
	t.Parallel()
	c := sandbox.Shared(t)
	app := &redisApp{Namespace: "group", Name: "cache", Blueprint: "redis-hooks", ExtraClaims: []string{"journal"}}
	app.deploy(t)
	marker := app.writeMarker(t, "journal")

	up := startUp(t)
	client := connect(t, up)
	id, evs := backupUntilReady(t, up, client, app)
	s, ok := harness.Payload[events.Snapshotted](evs)
	if !ok || s.Mode != events.SnapshotModeGroup || s.Group == "" || s.GroupClass != sandbox.GroupSnapshotClassName || len(s.Snapshots) != 2 {
		t.Fatalf("snapshotted %+v, want one group snapshot of class %s", s, sandbox.GroupSnapshotClassName)
	}
	g, err := c.Snapshots.GroupsnapshotV1().VolumeGroupSnapshots(app.Namespace).Get(t.Context(), s.Group, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if g.Labels[labelBackupID] != id {
		t.Errorf("group snapshot %s labelled %v, want backup %s", g.Name, g.Labels, id)
	}
	if s.Snapshots[0].CutAt != s.Snapshots[1].CutAt {
		t.Errorf("members cut at %s and %s, want one instant", s.Snapshots[0].CutAt, s.Snapshots[1].CutAt)
	}
	sr, ok := harness.Payload[events.SnapshotReady](evs)
	if !ok || len(sr.Snapshots) != 2 {
		t.Fatalf("snapshot-ready %+v", sr)
	}
	if r, _ := harness.Payload[events.Resumed](evs); r == nil || !r.Succeeded {
		t.Fatalf("resumed %+v", r)
	}
	for _, m := range sr.Snapshots {
		vs, err := c.Snapshots.SnapshotV1().VolumeSnapshots(app.Namespace).Get(t.Context(), m.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if src := vs.Spec.Source.PersistentVolumeClaimName; src == nil || *src != m.PVC {
			t.Errorf("member %s: source %v, want claim %s", m.Name, src, m.PVC)
		}
		dir := snapshotDir(t, app.Namespace, m.Name)
		switch m.PVC {
		case app.claim("journal"):
			if got, err := os.ReadFile(filepath.Join(dir, "marker")); err != nil || string(got) != marker {
				t.Errorf("journal member %s: marker %q, %v", dir, got, err)
			}
		case app.claim("data"):
			if _, err := os.Stat(filepath.Join(dir, sandbox.Redis, "appendonlydir")); err != nil {
				t.Errorf("data member %s: %v", dir, err)
			}
		default:
			t.Errorf("member of unexpected claim %s", m.PVC)
		}
	}

	// The same Quiesced again, as after a crash before its ack: no second group.
	redeliverQuiesced(t, up, evs)
	groups := func() int {
		l, err := c.Snapshots.GroupsnapshotV1().VolumeGroupSnapshots(app.Namespace).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return len(l.Items)
	}
	members := func() int {
		l, err := c.Snapshots.SnapshotV1().VolumeSnapshots(app.Namespace).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return len(l.Items)
	}
	waitConsumerIdle(t, up, snapshotterConsumer)
	if g, m := groups(), members(); g != 1 || m != 2 {
		t.Errorf("after the redelivered Quiesced: %d group snapshots and %d volume snapshots, want 1 and 2", g, m)
	}
}

// A Quiesced delivered again creates no second VolumeSnapshot.
func TestRedeliveredQuiescedCreatesNoSecondSnapshot(t *testing.T) {
	t.Parallel()
	c := sandbox.Shared(t)
	app := &redisApp{Namespace: "redeliver", Name: "cache", Blueprint: "redis-hooks"}
	app.deploy(t)
	up := startUp(t)
	client := connect(t, up)
	id, evs := backupUntilReady(t, up, client, app)
	requireKinds(t, evs, events.KindRequested, events.KindQuiesced, events.KindSnapshotted, events.KindResumed)

	redeliverQuiesced(t, up, evs)
	waitConsumerIdle(t, up, snapshotterConsumer)
	l, err := c.Snapshots.SnapshotV1().VolumeSnapshots(app.Namespace).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := harness.Payload[events.Snapshotted](evs)
	if len(l.Items) != 1 || l.Items[0].Name != s.Snapshots[0].Name {
		t.Fatalf("%d volumesnapshots after the redelivered Quiesced, want exactly %s", len(l.Items), s.Snapshots[0].Name)
	}
	if n := countKind(t, up, id, events.KindSnapshotted); n != 1 {
		t.Errorf("%d Snapshotted events, want 1", n)
	}
}

// Retention from the workload's annotation: after four backups, the two newest are left.
func TestRetentionKeepsExactlyN(t *testing.T) {
	t.Parallel()
	c := sandbox.Shared(t)
	app := &redisApp{Namespace: "retention", Name: "cache", Blueprint: "redis-hooks",
		Annotations: map[string]string{"freezeframe.io/snapshots-to-keep": "2"}}
	app.deploy(t)
	up := startUp(t)
	client := connect(t, up)
	var ids []string
	var last *events.SnapshotReady
	for range 4 {
		id, evs := backupUntilReady(t, up, client, app)
		sr, ok := harness.Payload[events.SnapshotReady](evs)
		if !ok {
			t.Fatalf("backup %s not ready:\n%s", id, harness.Timeline(evs))
		}
		ids, last = append(ids, id), sr
	}
	waitFor(t, 30*time.Second, "two backups left", func() (bool, error) {
		l, err := c.Snapshots.SnapshotV1().VolumeSnapshots(app.Namespace).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		var left []string
		for _, vs := range l.Items {
			left = append(left, vs.Annotations[labelBackupID])
		}
		slices.Sort(left)
		want := slices.Sorted(slices.Values(ids[2:]))
		if !slices.Equal(left, want) {
			return false, fmt.Errorf("snapshots of backups %v left, want %v", left, want)
		}
		return true, nil
	})
	if last.SnapshotsToKeep != 2 || !slices.Equal(last.Pruned, ids[1:2]) {
		t.Errorf("last snapshot-ready keeps %d, pruned %v; want 2 and [%s]", last.SnapshotsToKeep, last.Pruned, ids[1])
	}
}

// Snapshot errors end in BackupFailed with the reason, the application resumed and
// writable: a class that does not exist, and a snapshot the driver refuses.
func TestSnapshotErrorsFailAndResume(t *testing.T) {
	t.Parallel()
	c := sandbox.Shared(t)
	const refused = "e2e-refusing"
	if _, err := harness.Apply(t.Context(), c, fmt.Sprintf(`apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshotClass
metadata: {name: %s}
driver: %s
deletionPolicy: Delete
parameters: {readyDelay: not-a-duration}
`, refused, sandbox.DriverName)); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, class, wantReason string
	}{
		{"class not found", "no-such-class", "VolumeSnapshotClass no-such-class not found"},
		{"driver refuses", refused, "readyDelay"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			app := &redisApp{Namespace: "snaperr-" + strings.ReplaceAll(tt.name, " ", "-"), Name: "cache", Blueprint: "redis-hooks",
				Annotations: map[string]string{"freezeframe.io/snapshot-class": tt.class}}
			app.deploy(t)
			up := startUp(t)
			client := connect(t, up)
			_, evs := backupUntilReady(t, up, client, app)
			requireSnapshotFailure(t, app, evs, tt.wantReason)
		})
	}
}

// backupUntilReady requests a backup of app (with the snapshot class named, if any) and
// follows it until it is complete; the timeline goes to the test's log.
func backupUntilReady(t *testing.T, up *harness.Up, client *events.Client, app *redisApp, class ...string) (string, []events.Event) {
	t.Helper()
	id := requestBackup(t, up, client, app.Namespace, events.KindDeployment, app.Name, class...)
	evs := followBackupReady(t, client, id).wait(t, 2*time.Minute)
	t.Logf("backup %s:\n%s", id, harness.Timeline(evs))
	return id, evs
}

// requireSnapshotFailure checks that a backup of app failed at the snapshot step with a
// reason holding every one of wantReason, that the application was resumed and takes
// writes, and that no snapshot of the failed backup is left.
func requireSnapshotFailure(t *testing.T, app *redisApp, evs []events.Event, wantReason ...string) {
	t.Helper()
	requireKinds(t, evs, events.KindRequested, events.KindQuiesced, events.KindFailed, events.KindResumed)
	f, _ := harness.Payload[events.BackupFailed](evs)
	if f.Step != events.StepSnapshot {
		t.Errorf("failed %+v, want step snapshot", f)
	}
	for _, want := range wantReason {
		if !strings.Contains(f.Reason, want) {
			t.Errorf("reason %q lacks %q", f.Reason, want)
		}
	}
	if r, _ := harness.Payload[events.Resumed](evs); r.Succeeded {
		t.Errorf("resumed %+v, want a failed backup", r)
	}
	if err := redisWrite(t.Context(), app.Server, "after-failure", 5*time.Second); err != nil {
		t.Fatalf("redis not writable after the failed backup: %v", err)
	}
	c := sandbox.Shared(t)
	waitFor(t, 30*time.Second, "no snapshot of the failed backup left", func() (bool, error) {
		l, err := c.Snapshots.SnapshotV1().VolumeSnapshots(app.Namespace).List(t.Context(), metav1.ListOptions{})
		return err == nil && len(l.Items) == 0, err
	})
}

// redeliverQuiesced publishes the backup's Quiesced again under a new event id, as
// JetStream redelivers an event whose handler died before its ack.
func redeliverQuiesced(t *testing.T, up *harness.Up, evs []events.Event) {
	t.Helper()
	q, ok := harness.Payload[events.Quiesced](evs)
	if !ok {
		t.Fatal("no quiesced event to redeliver")
	}
	nc, _, err := up.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := events.NewPublisher(js, events.RoleHooker.Source()).Publish(t.Context(), q, events.WithID(q.BackupID+".quiesced.redelivered")); err != nil {
		t.Fatal(err)
	}
}

// waitConsumerIdle waits until a service's consumer has handled and acknowledged every
// event it was given.
func waitConsumerIdle(t *testing.T, up *harness.Up, durable string) {
	t.Helper()
	nc, _, err := up.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "consumer "+durable+" idle", func() (bool, error) {
		cons, err := js.Consumer(t.Context(), events.DefaultStream, durable)
		if err != nil {
			return false, err
		}
		ci, err := cons.Info(t.Context())
		if err != nil {
			return false, err
		}
		return ci.NumPending == 0 && ci.NumAckPending == 0, nil
	})
}

func countKind(t *testing.T, up *harness.Up, id string, k events.Kind) int {
	t.Helper()
	nc, client, err := up.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	evs, err := client.List(t.Context(), events.Filter{BackupID: id, Kinds: []events.Kind{k}}, events.SubscribeOptions{FromStart: true})
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

// A volume whose CSI driver has no VolumeSnapshotClass: the backup fails before any
// snapshot is created, names the driver, and the database is resumed.
func TestNoSnapshotClassForTheDriverFails(t *testing.T) {
	t.Parallel()
	c := sandbox.Shared(t)
	const ns, foreign = "snaperr-no-class", "foreign"
	if err := c.EnsureNamespace(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	// A statically provisioned volume of a driver the cluster has no class for, bound to
	// its claim by the PersistentVolume controller.
	if _, err := harness.Apply(t.Context(), c, fmt.Sprintf(`apiVersion: v1
kind: PersistentVolume
metadata: {name: e2e-%[1]s-%[2]s}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  csi: {driver: other.csi.example.com, volumeHandle: %[1]s-%[2]s}
  claimRef: {namespace: %[1]s, name: %[2]s}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  volumeName: e2e-%[1]s-%[2]s
  resources: {requests: {storage: 1Gi}}
`, ns, foreign)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "claim "+foreign+" bound", func() (bool, error) {
		pvc, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Get(t.Context(), foreign, metav1.GetOptions{})
		return err == nil && pvc.Status.Phase == "Bound", err
	})
	app := &redisApp{Namespace: ns, Name: "cache", Blueprint: "redis-hooks", ExistingClaims: []string{foreign}}
	app.deploy(t)
	up := startUp(t)
	client := connect(t, up)
	_, evs := backupUntilReady(t, up, client, app)
	requireSnapshotFailure(t, app, evs, "no VolumeSnapshotClass for CSI driver other.csi.example.com")
}

// The snapshotter's identity may not create VolumeSnapshots (RBAC): the backup fails with
// the API's refusal, and the database is resumed.
func TestSnapshotRBACDenialFails(t *testing.T) {
	t.Parallel()
	c := sandbox.Shared(t)
	const ns = "snaperr-rbac"
	app := &redisApp{Namespace: ns, Name: "cache", Blueprint: "redis-hooks"}
	app.deploy(t)
	// Everything the snapshotter reads, and no create of volumesnapshots.
	if _, err := harness.Apply(t.Context(), c, fmt.Sprintf(`apiVersion: v1
kind: ServiceAccount
metadata: {name: snapshotter-readonly, namespace: %[1]s}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: e2e-snapshotter-readonly}
rules:
- apiGroups: [snapshot.storage.k8s.io, groupsnapshot.storage.k8s.io]
  resources: ["*"]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [persistentvolumeclaims, persistentvolumes, pods]
  verbs: [get, list, watch]
- apiGroups: [storage.k8s.io]
  resources: [storageclasses]
  verbs: [get, list, watch]
- apiGroups: [apps]
  resources: [deployments, statefulsets]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e2e-snapshotter-readonly}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: e2e-snapshotter-readonly}
subjects: [{kind: ServiceAccount, name: snapshotter-readonly, namespace: %[1]s}]
`, ns)); err != nil {
		t.Fatal(err)
	}
	tr, err := c.Client.CoreV1().ServiceAccounts(ns).CreateToken(t.Context(), "snapshotter-readonly", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "snapshotter-readonly.kubeconfig")
	if err := deploy.WriteKubeconfig(kubeconfig, c.Config, tr.Status.Token, ns); err != nil {
		t.Fatal(err)
	}
	up := startUp(t, "SNAPSHOTTER_KUBECONFIG="+kubeconfig)
	client := connect(t, up)
	_, evs := backupUntilReady(t, up, client, app)
	// The API's refusal, naming the service account.
	requireSnapshotFailure(t, app, evs, "forbidden", "snapshotter-readonly")
}

// kill -9 of freezeframe up (services and embedded NATS) while the storage uploads, after
// the resume: restarted, the snapshotter picks the Snapshotted up again and the backup
// still ends with SnapshotReady.
func TestKillDuringUploadStillReady(t *testing.T) {
	t.Parallel()
	c := sandbox.Shared(t)
	app := &redisApp{Namespace: "kill-upload", Name: "cache", Blueprint: "redis-hooks"}
	app.deploy(t)
	const class = "e2e-upload-6s"
	if _, err := harness.Apply(t.Context(), c, fmt.Sprintf(`apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshotClass
metadata: {name: %s}
driver: %s
deletionPolicy: Delete
parameters: {readyDelay: 6s}
`, class, sandbox.DriverName)); err != nil {
		t.Fatal(err)
	}
	up := startUp(t)
	client := connect(t, up)
	id := requestBackup(t, up, client, app.Namespace, events.KindDeployment, app.Name, class)
	followBackupReady(t, client, id).waitKind(t, events.KindResumed, time.Minute)
	killed := time.Now()
	if err := up.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := up.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	client = connect(t, up)
	evs := followBackupReady(t, client, id).wait(t, 2*time.Minute)
	t.Logf("killed at %s; backup %s:\n%s", killed.Format("15:04:05.000"), id, harness.Timeline(evs))
	requireKinds(t, evs, events.KindRequested, events.KindQuiesced, events.KindSnapshotted, events.KindResumed, events.KindSnapshotReady)
	if ready := evs[len(evs)-1]; !ready.Time().After(killed) {
		t.Errorf("snapshot-ready at %s, before the kill at %s: the upload was not in progress", ready.Time(), killed)
	}
	if n := countKind(t, up, id, events.KindSnapshotReady); n != 1 {
		t.Errorf("%d SnapshotReady events, want 1", n)
	}
}
