package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/test/e2e/consistency"
	"github.com/freezeframe/freezeframe/test/e2e/demo"
	"github.com/freezeframe/freezeframe/test/e2e/harness"
	"github.com/freezeframe/freezeframe/test/sandbox"
)

// The demo's Redis under a writer, backed up, written to after the backup, then
// restored with `freezeframe restore --in-place --yes --wait`: the Deployment is scaled
// down, its claim remade from the snapshot on a new volume, scaled up; the Redis of its
// new pod holds exactly the keys acknowledged before the pause (none written after), and
// the old volume is kept, Retain and Released.
func TestRestoreRedisInPlace(t *testing.T) {
	t.Parallel()
	c := sandbox.Shared(t)
	ns := "inplace"
	rig := startDemoRedisUnderWriter(t, c, ns)
	pass, oldVol, up, client, w := rig.pass, rig.vol, rig.up, rig.client, rig.w
	defer w.Stop(5 * time.Second)
	id := requestBackup(t, up, client, ns, events.KindDeployment, demo.Workload)
	evs := followBackupReady(t, client, id).wait(t, 2*time.Minute)
	t.Logf("backup %s:\n%s", id, harness.Timeline(evs))
	q, okQ := harness.Payload[events.Quiesced](evs)
	r, okR := harness.Payload[events.Resumed](evs)
	if !okQ || !okR || !r.Succeeded {
		t.Fatalf("backup did not succeed: %v", harness.Kinds(evs))
	}
	freeze := consistency.Freeze{From: q.QuiescedAt, Until: q.QuiescedAt.Add(r.FrozenFor.Std())}
	// Writes after the backup: the in-place restore takes the application back before them.
	if _, err := w.WaitAckedAfter(ctxTimeout(t, 10*time.Second), time.Now().Add(200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	writes, err := w.Stop(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}

	cmd := exec.CommandContext(t.Context(), freezeframeBin(t), "restore", id, "--in-place", "--yes", "--wait", "--timeout", "3m", "--kubeconfig", c.Kubeconfig)
	cmd.Env = append(os.Environ(), up.Env()...)
	out, err := cmd.CombinedOutput()
	t.Logf("$ freezeframe restore %s --in-place --yes --wait\n%s", id, out)
	if err != nil {
		t.Fatalf("freezeframe restore --in-place: %v", err)
	}
	for _, want := range []string{events.RestoreStepRetain, events.RestoreStepScaleDown, events.RestoreStepDeleteClaims, events.RestoreStepCreateClaims, events.RestoreStepScaleUp,
		"old volumes kept (Retain, delete them when done): " + oldVol.PV, ns + "/" + demo.Claim + " bound to "} {
		if !strings.Contains(string(out), want) {
			t.Errorf("restore output lacks %q", want)
		}
	}

	claim, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Get(t.Context(), demo.Claim, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if claim.Spec.VolumeName == oldVol.PV || claim.Spec.DataSource == nil {
		t.Fatalf("claim %s: volume %s (old %s), dataSource %+v: not remade from the snapshot", demo.Claim, claim.Spec.VolumeName, oldVol.PV, claim.Spec.DataSource)
	}
	old, err := c.Client.CoreV1().PersistentVolumes().Get(t.Context(), oldVol.PV, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("old volume: %v", err)
	}
	if old.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
		t.Errorf("old volume %s: reclaim policy %s, want Retain", old.Name, old.Spec.PersistentVolumeReclaimPolicy)
	}
	t.Logf("old volume %s: %s, %s", old.Name, old.Spec.PersistentVolumeReclaimPolicy, old.Status.Phase)

	// The new pod's Redis, on the new volume.
	waitPodRunning(t, ns, "app=redis")
	var fresh *sandbox.Server
	waitFor(t, 90*time.Second, "redis on the restored volume "+claim.Spec.VolumeName, func() (bool, error) {
		s, v, err := c.DatabaseFor(t.Context(), ns, demo.Claim)
		if err != nil {
			return false, err
		}
		fresh = s
		return v.PV == claim.Spec.VolumeName, nil
	})
	present, err := consistency.RedisNumberedKeys(ctxTimeout(t, 30*time.Second), addr(fresh), pass, "k")
	if err != nil {
		t.Fatal(err)
	}
	v := consistency.Check(writes, present, freeze)
	t.Logf("restored in place:\n%s", v.Summary())
	if !v.Consistent {
		t.Fatalf("the restored Redis is not the writer's state at the freeze: %s", strings.Join(v.Problems, "; "))
	}
	if len(present) >= len(writes) {
		t.Errorf("%d keys restored of %d written: the writes after the backup are back", len(present), len(writes))
	}
}
