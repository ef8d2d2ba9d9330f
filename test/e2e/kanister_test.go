package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/test/e2e/harness"
	"github.com/freezeframe/freezeframe/test/sandbox"
)

// k10MongoBlueprint is the MongoDB blueprint as K10 blog posts show it, to paste as is:
// Kanister's group, in K10's namespace, the root password read from the bitnami chart's
// Secret through "objects" (services/hooker/blueprint/testdata/mongo-hooks.yaml and
// docs/blueprints.md hold the same).
const k10MongoBlueprint = `apiVersion: cr.kanister.io/v1alpha1
kind: Blueprint
metadata:
  name: mongo-hooks
  namespace: kasten-io
actions:
  backupPrehook:
    phases:
    - func: KubeExec
      name: lockMongo
      objects:
        mongoDbSecret:
          kind: Secret
          name: '{{ .StatefulSet.Name }}'
          namespace: '{{ .StatefulSet.Namespace }}'
      args:
        namespace: "{{ .StatefulSet.Namespace }}"
        pod: "{{ index .StatefulSet.Pods 0 }}"
        container: mongodb
        command:
        - bash
        - -o
        - errexit
        - -o
        - pipefail
        - -c
        - |
          export MONGODB_ROOT_PASSWORD='{{ index .Phases.lockMongo.Secrets.mongoDbSecret.Data "mongodb-root-password" | toString }}'
          mongosh --authenticationDatabase admin -u root -p "${MONGODB_ROOT_PASSWORD}" --eval="db.fsyncLock()"
  backupPosthook:
    phases:
    - func: KubeExec
      name: unlockMongo
      objects:
        mongoDbSecret:
          kind: Secret
          name: '{{ .StatefulSet.Name }}'
          namespace: '{{ .StatefulSet.Namespace }}'
      args:
        namespace: "{{ .StatefulSet.Namespace }}"
        pod: "{{ index .StatefulSet.Pods 0 }}"
        container: mongodb
        command:
        - bash
        - -o
        - errexit
        - -o
        - pipefail
        - -c
        - |
          export MONGODB_ROOT_PASSWORD='{{ index .Phases.unlockMongo.Secrets.mongoDbSecret.Data "mongodb-root-password" | toString }}'
          mongosh --authenticationDatabase admin -u root -p "${MONGODB_ROOT_PASSWORD}" --eval="db.fsyncUnlock()"
`

// kanisterBlueprintCRD stands in for the Blueprint CRD that Kanister and K10 install: the
// same name, group, version, kind and scope; its schema keeps every field.
const kanisterBlueprintCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: blueprints.cr.kanister.io
spec:
  group: cr.kanister.io
  scope: Namespaced
  names: {kind: Blueprint, listKind: BlueprintList, plural: blueprints, singular: blueprint}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`

// standInMongosh answers like mongosh 2.x for the two calls the blueprint makes. It
// records each call's arguments (one line, separated by \x1f), refuses a wrong password,
// and keeps fsyncLock's reference count in the data volume, as MongoDB's lock lives with
// its data: a snapshot cut while locked holds a count of 1.
const standInMongosh = `#!/bin/bash
# Stand-in for mongosh (MongoDB is not packaged for Debian).
set -u
printf '%s\x1f' "$@" >> "$MONGOSH_CALLS"
echo >> "$MONGOSH_CALLS"
user= pass= eval=
while [ $# -gt 0 ]; do
	case $1 in
	-u) user=$2; shift ;;
	-p) pass=$2; shift ;;
	--eval=*) eval=${1#--eval=} ;;
	esac
	shift
done
if [ "$user" != root ] || [ "$pass" != "$MONGOSH_ROOT_PASSWORD" ]; then
	echo "MongoServerError: Authentication failed." >&2
	exit 1
fi
state="$MONGOSH_DATA/fsync-lock-count"
count=$(cat "$state" 2>/dev/null || echo 0)
case $eval in
'db.fsyncLock()')
	count=$((count + 1))
	echo "$count" > "$state"
	echo "{ info: 'now locked against writes, use db.fsyncUnlock() to unlock', lockCount: Long('$count'), seeAlso: 'https://dochub.mongodb.org/core/fsynccommand', ok: 1 }"
	;;
'db.fsyncUnlock()')
	if [ "$count" -eq 0 ]; then
		echo "MongoServerError[IllegalOperation]: fsyncUnlock called when not locked" >&2
		exit 1
	fi
	count=$((count - 1))
	echo "$count" > "$state"
	echo "{ info: 'fsyncUnlock completed', lockCount: Long('$count'), ok: 1 }"
	;;
*)
	echo "stand-in mongosh: cannot evaluate $eval" >&2
	exit 1
	;;
esac
`

// A K10 user's MongoDB blueprint, applied exactly as the blog post shows it (Kanister's
// CRD, namespace kasten-io), is found by a freezeframe configured with nothing about
// blueprints: the backup locks MongoDB (a stand-in mongosh), cuts the snapshot while it is
// locked, and unlocks it. A blueprint found nowhere fails the backup naming every
// namespace searched.
func TestK10MongoBlueprintZeroConfig(t *testing.T) {
	t.Parallel()
	c := sandbox.Shared(t)
	ctx := ctxTimeout(t, 4*time.Minute)
	const (
		ns      = "k10-mongo"
		name    = "mongodb"
		claim   = "datadir-" + name + "-0"
		profile = "k10-mongo"
	)
	installCRD(t)
	if out, err := c.KubectlStdin(ctx, strings.NewReader(kanisterBlueprintCRD), "apply", "-f", "-"); err != nil {
		t.Fatalf("install Kanister's Blueprint CRD: %v\n%s", err, out)
	}
	if out, err := c.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "crd/blueprints.cr.kanister.io"); err != nil {
		t.Fatalf("Kanister's Blueprint CRD: %v\n%s", err, out)
	}
	for _, n := range []string{"kasten-io", ns} {
		if err := c.EnsureNamespace(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := harness.Apply(ctx, c, k10MongoBlueprint); err != nil {
		t.Fatal(err)
	}

	// MongoDB as the bitnami chart deploys it: the Secret named after the release, a
	// StatefulSet with a claim template, bound to the blueprint by Kanister's annotation.
	password := randomHex(8)
	if _, err := harness.Apply(ctx, c, fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: %[1]s, namespace: %[2]s}
stringData: {mongodb-root-password: %[3]s}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: %[1]s
  namespace: %[2]s
  annotations: {kanister.kasten.io/blueprint: mongo-hooks}
spec:
  replicas: 1
  serviceName: %[1]s
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata:
      labels: {app: %[1]s, %[4]s: %[5]s}
    spec:
      containers:
      - name: mongodb
        image: bitnami/mongodb:7.0
        volumeMounts:
        - {name: datadir, mountPath: /bitnami/mongodb}
  volumeClaimTemplates:
  - metadata: {name: datadir}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
`, name, ns, password, sandbox.ExecLabel, profile)); err != nil {
		t.Fatal(err)
	}
	pod := waitPodRunning(t, ns, "app="+name)
	var vol *sandbox.Volume
	waitFor(t, 60*time.Second, "volume of "+claim, func() (bool, error) {
		var err error
		vol, err = c.ClaimVolume(ctx, ns, claim)
		return err == nil, err
	})

	// Execs into the pod run locally, with the stand-in mongosh first on PATH.
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "mongosh"), []byte(standInMongosh), 0o755); err != nil {
		t.Fatal(err)
	}
	calls := filepath.Join(t.TempDir(), "mongosh-calls")
	if err := c.ExecFor(ctx, profile, "mongodb", vol.Path, map[string]string{
		"PATH":                  bin + string(os.PathListSeparator) + os.Getenv("PATH"),
		"MONGOSH_CALLS":         calls,
		"MONGOSH_ROOT_PASSWORD": password,
		"MONGOSH_DATA":          vol.Path,
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitExec(ctx, ns, pod, "mongodb"); err != nil {
		t.Fatal(err)
	}

	// freezeframe with nothing blueprint-related in its environment.
	up := startUp(t)
	client := connect(t, up)
	id := requestBackup(t, up, client, ns, events.KindStatefulSet, name)
	evs := followBackup(t, client, id).wait(t, 2*time.Minute)
	t.Logf("backup %s:\n%s", id, harness.Timeline(evs))
	requireKinds(t, evs, events.KindRequested, events.KindQuiesced, events.KindSnapshotted, events.KindResumed)
	q, _ := harness.Payload[events.Quiesced](evs)
	if q.Blueprint != "mongo-hooks" || len(q.Hooks) != 1 || q.Hooks[0].Phase != "lockMongo" || q.Hooks[0].Pod != pod {
		t.Errorf("quiesced by %s with %+v, want mongo-hooks' lockMongo in %s", q.Blueprint, q.Hooks, pod)
	}
	r, _ := harness.Payload[events.Resumed](evs)
	if !r.Succeeded || len(r.Hooks) != 1 || r.Hooks[0].Phase != "unlockMongo" {
		t.Errorf("resumed: succeeded %v with %+v, want unlockMongo", r.Succeeded, r.Hooks)
	}

	// mongosh ran twice, as the post's commands say, with the Secret's password.
	b, err := os.ReadFile(calls)
	if err != nil {
		t.Fatalf("stand-in mongosh never ran: %v", err)
	}
	var got [][]string
	for line := range strings.Lines(string(b)) {
		got = append(got, strings.Split(strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\x1f"), "\x1f"))
	}
	want := [][]string{
		{"--authenticationDatabase", "admin", "-u", "root", "-p", password, "--eval=db.fsyncLock()"},
		{"--authenticationDatabase", "admin", "-u", "root", "-p", password, "--eval=db.fsyncUnlock()"},
	}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("mongosh calls %q, want %q", got, want)
	}
	// Locked in the snapshot, unlocked in the live volume.
	snap, ok := harness.Payload[events.Snapshotted](evs)
	if !ok || len(snap.Snapshots) != 1 || snap.Snapshots[0].PVC != claim {
		t.Fatalf("snapshotted %+v, want one snapshot of %s", snap, claim)
	}
	lockCount := func(dir string) string {
		b, err := os.ReadFile(filepath.Join(dir, "fsync-lock-count"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	if n := lockCount(snapshotDir(t, ns, snap.Snapshots[0].Name)); n != "1" {
		t.Errorf("fsyncLock count in the snapshot: %s, want 1 (cut while locked)", n)
	}
	if n := lockCount(vol.Path); n != "0" {
		t.Errorf("fsyncLock count after the backup: %s, want 0 (unlocked)", n)
	}

	// A blueprint found nowhere: the failure names every namespace searched, the
	// workload's first and kasten-io last.
	fid, err := client.RequestBackup(ctx, events.BackupRequested{
		BackupRef:   events.BackupRef{Workload: events.Workload{Cluster: up.Cluster(), Namespace: ns, Kind: events.KindStatefulSet, Name: name}},
		RequestedBy: "e2e/" + t.Name(),
		Blueprint:   "mongo-hooks-typo",
	})
	if err != nil {
		t.Fatal(err)
	}
	fevs := followBackup(t, client, fid).wait(t, time.Minute)
	requireKinds(t, fevs, events.KindRequested, events.KindFailed)
	fail, _ := harness.Payload[events.BackupFailed](fevs)
	if fail.Step != events.StepResolve || fail.ResumePending ||
		!strings.Contains(fail.Reason, `"mongo-hooks-typo" in namespaces `+ns+", ") ||
		!strings.HasSuffix(fail.Reason, ", kanister, kasten-io") {
		t.Errorf("failed: step %s, resume pending %v, reason %q; want step resolve naming %s, ..., kanister, kasten-io", fail.Step, fail.ResumePending, fail.Reason, ns)
	}
	t.Logf("a blueprint found nowhere: %s", fail.Reason)
	if b, _ := os.ReadFile(calls); strings.Count(string(b), "\n") != 2 {
		t.Errorf("mongosh ran for the failed backup: %q", b)
	}
}
