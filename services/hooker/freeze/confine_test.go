package freeze

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kubefake "k8s.io/client-go/kubernetes/fake"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/pkg/workload"
	"github.com/freezeframe/freezeframe/services/hooker/podexec"
	"github.com/freezeframe/freezeframe/services/hooker/podexec/podexectest"
)

// hooksIn is a freezeframe.io Blueprint named "hooks" in namespace, with
// the given pre-hook phases and a post-hook that resumes redis in its own
// pod.
func hooksIn(namespace string, pre ...map[string]any) *unstructured.Unstructured {
	post := execPhase("resume", "{{ .Deployment.Namespace }}", "{{ index .Deployment.Pods 0 }}", "redis-cli", "CLIENT UNPAUSE")
	phases := make([]any, len(pre))
	for i, p := range pre {
		phases[i] = p
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "freezeframe.io/v1alpha1", "kind": "Blueprint",
		"metadata": map[string]any{"name": "hooks", "namespace": namespace},
		"actions": map[string]any{
			"backupPrehook":  map[string]any{"phases": phases},
			"backupPosthook": map[string]any{"phases": []any{post}},
		},
	}}
}

func execPhase(name, namespace, pod string, command ...any) map[string]any {
	return map[string]any{"func": "KubeExec", "name": name, "args": map[string]any{
		"namespace": namespace, "pod": pod, "container": "main", "command": command,
	}}
}

func runningPod(namespace, name string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

var (
	etcdPod        = runningPod("kube-system", "etcd-0", map[string]string{"component": "etcd"})
	backupAgentPod = runningPod("db-tools", "backup-agent-0", map[string]string{"app": "backup-agent"})
)

// requestWith asks for a backup of redis with options, and waits for its
// end, or for its freeze (nobody snapshots here).
func (f *fixture) requestWith(t *testing.T, options map[string]string) []events.Event {
	t.Helper()
	ev, err := f.client.PublishBackupRequested(t.Context(), events.BackupRequested{BackupRef: events.BackupRef{Workload: redisWorkload}, Options: options})
	if err != nil {
		t.Fatal(err)
	}
	col := eventstest.Collect(t.Context(), t, f.client, events.Filter{BackupID: ev.BackupID()})
	return col.Until(10*time.Second, func(e events.Event) bool { return e.Kind() == events.KindQuiesced || events.IsTerminal(e) })
}

// failedBeforeFreeze returns the final BackupFailed of a backup that froze
// nothing, or fails the test.
func failedBeforeFreeze(t *testing.T, f *fixture, evs []events.Event) *events.BackupFailed {
	t.Helper()
	for _, e := range evs {
		if e.Kind() == events.KindQuiesced {
			t.Fatalf("the backup froze: %v", kinds(evs))
		}
	}
	last := evs[len(evs)-1]
	failed, ok := last.Payload.(*events.BackupFailed)
	if !ok || failed.ResumePending || failed.Step != events.StepResolve {
		t.Fatalf("want a final BackupFailed at resolve, got %s %+v", last.Kind(), last.Payload)
	}
	t.Logf("reason: %s", failed.Reason)
	if cmds := f.exec.Commands(); len(cmds) != 0 {
		t.Fatalf("hooks ran although the backup failed before freezing: %q", cmds)
	}
	return failed
}

func wantAll(t *testing.T, what, text string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(text, w) {
			t.Errorf("%s %q does not say %q", what, text, w)
		}
	}
}

// A tenant who may create Blueprints in their namespace cannot use one to
// exec into kube-system: by default the hooker does not read blueprints
// there, and when the operator allows it the target is still refused.
func TestTenantBlueprintCannotExecIntoKubeSystem(t *testing.T) {
	tenant := hooksIn("shop", execPhase("steal", "kube-system", "etcd-0", "cat", "/etc/kubernetes/pki/etcd/server.key"))
	annotations := map[string]string{AnnotationBlueprint: "hooks"}

	t.Run("namespaced blueprints off (default)", func(t *testing.T) {
		f := newFixture(t, Config{}, tenant, annotations, etcdPod)
		failed := failedBeforeFreeze(t, f, f.requestWith(t, nil))
		wantAll(t, "reason", failed.Reason, "blueprint not found", "the workload's namespace shop is not searched", "HOOKER_NAMESPACED_BLUEPRINTS=true")
	})

	t.Run("namespaced blueprints on", func(t *testing.T) {
		f := newFixture(t, Config{NamespacedBlueprints: true}, tenant, annotations, etcdPod)
		failed := failedBeforeFreeze(t, f, f.requestWith(t, nil))
		wantAll(t, "reason", failed.Reason, "phase steal", "kube-system/etcd-0", "deployment/redis -n shop", "HOOKER_EXEC_ALLOW", "hooker.execAllow")
		wantAll(t, "log", f.logs.String(), `"msg":"hook exec target refused"`, `"target_namespace":"kube-system"`, `"target_pod":"etcd-0"`, `"blueprint":"hooks"`)
	})

	// Reading another namespace's Secret and printing it into the
	// tenant's own pod would do as much harm as an exec there.
	t.Run("objects outside the namespace", func(t *testing.T) {
		phase := execPhase("leak", "shop", "redis-7d9f", "echo", `{{ index .Phases.leak.Secrets.token.Data "token" | toString }}`)
		phase["objects"] = map[string]any{"token": map[string]any{"kind": "Secret", "name": "admin-token", "namespace": "kube-system"}}
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "admin-token", Namespace: "kube-system"}, Data: map[string][]byte{"token": []byte("cluster-admin")}}
		f := newFixture(t, Config{NamespacedBlueprints: true}, hooksIn("shop", phase), annotations, secret)
		failed := failedBeforeFreeze(t, f, f.requestWith(t, nil))
		wantAll(t, "reason", failed.Reason, "object token is in namespace kube-system", "may read Secrets and ConfigMaps only there")
	})
}

// Another workload's pod in the same namespace is not the workload's.
func TestHookCannotExecIntoAnotherWorkloadsPod(t *testing.T) {
	bp := hooksIn("kanister", execPhase("pause", "shop", "cache-5b2c", "redis-cli", "CLIENT PAUSE 1000"))
	f := newFixture(t, Config{}, bp, map[string]string{AnnotationBlueprint: "hooks"})
	failed := failedBeforeFreeze(t, f, f.requestWith(t, nil))
	wantAll(t, "reason", failed.Reason, "shop/cache-5b2c", "not selected by the workload's selector app=redis")
}

// The platform team's allow-list lets a hook run in a helper pod elsewhere.
func TestExecAllowListWidensTargets(t *testing.T) {
	bp := hooksIn("kanister",
		execPhase("pause", "{{ .Deployment.Namespace }}", "{{ index .Deployment.Pods 0 }}", "redis-cli", "CLIENT PAUSE 60000 WRITE"),
		execPhase("mark", "db-tools", "backup-agent-0", "backup-agent", "mark", "{{ .Deployment.Name }}"))
	annotations := map[string]string{AnnotationBlueprint: "hooks"}

	t.Run("not listed", func(t *testing.T) {
		f := newFixture(t, Config{}, bp, annotations, backupAgentPod)
		failed := failedBeforeFreeze(t, f, f.requestWith(t, nil))
		wantAll(t, "reason", failed.Reason, "db-tools/backup-agent-0", `"db-tools:<label selector of that pod>"`)
	})

	t.Run("listed", func(t *testing.T) {
		allow, err := ParseExecAllowList("ops:team=dba; db-tools:app=backup-agent")
		if err != nil {
			t.Fatal(err)
		}
		f := newFixture(t, Config{ExecAllow: allow}, bp, annotations, backupAgentPod)
		evs := f.requestWith(t, nil)
		if !containsKind(evs, events.KindQuiesced) {
			t.Fatalf("not frozen: %v %+v", kinds(evs), evs[len(evs)-1].Payload)
		}
		if c, ok := f.exec.Last("db-tools", "backup-agent mark redis"); !ok || c.Pod != "backup-agent-0" {
			t.Fatalf("the allowed hook did not run: %q", f.exec.Commands())
		}
	})
}

func containsKind(evs []events.Event, k events.Kind) bool {
	for _, e := range evs {
		if e.Kind() == k {
			return true
		}
	}
	return false
}

// outputExec prints, for a command containing a key of out, that value on
// stdout; everything else goes to the Recorder.
type outputExec struct {
	*podexectest.Recorder
	out map[string]string
}

func (o outputExec) Exec(ctx context.Context, r podexec.Request) (podexec.Result, error) {
	res, err := o.Recorder.Exec(ctx, r)
	for substr, stdout := range o.out {
		if strings.Contains(strings.Join(r.Command, " "), substr) {
			res.Stdout = []byte(stdout)
		}
	}
	return res, err
}

// A target read from an earlier phase's output is known only once that
// phase ran: it is checked just before the exec, which is refused, and the
// application is resumed.
func TestExecTargetFromOutputCheckedBeforeExec(t *testing.T) {
	bp := hooksIn("kanister",
		execPhase("find", "{{ .Deployment.Namespace }}", "{{ index .Deployment.Pods 0 }}", "find-primary"),
		execPhase("pause", "kube-system", "{{ .Phases.find.Output.primary }}", "redis-cli", "CLIENT PAUSE 60000 WRITE"))
	f := newFixture(t, Config{}, bp, map[string]string{AnnotationBlueprint: "hooks"}, etcdPod)
	f.svc.exec = outputExec{f.exec, map[string]string{"find-primary": `###Phase-output###: {"key":"primary","value":"etcd-0"}` + "\n"}}
	evs := f.requestWith(t, nil)
	var failed *events.BackupFailed
	for _, e := range evs {
		if p, ok := e.Payload.(*events.BackupFailed); ok {
			failed = p
		}
	}
	if failed == nil || failed.Step != events.StepQuiesce {
		t.Fatalf("want a failed pre-hook, got %v", kinds(evs))
	}
	wantAll(t, "reason", failed.Reason, "phase pause", "kube-system/etcd-0", ErrExecNotAllowed.Error())
	if _, ok := f.exec.Last("kube-system", "CLIENT PAUSE"); ok {
		t.Fatalf("exec'd into kube-system: %q", f.exec.Commands())
	}
	if evs[len(evs)-1].Kind() != events.KindResumed {
		t.Errorf("not resumed after the refused phase: %v", kinds(evs))
	}
}

// A pod that was the workload's when the backup was planned, then
// relabelled, is refused just before the exec.
func TestExecTargetCheckedAgainstThePodAsItIsNow(t *testing.T) {
	pod := runningPod("shop", "redis-7d9f", map[string]string{"app": "redis"})
	kube := kubefake.NewClientset(pod)
	info := &workload.Info{Kind: events.KindDeployment, Name: "redis", Namespace: "shop", Pods: []workload.Pod{{Name: "redis-7d9f"}}}
	sel, err := metav1.LabelSelectorAsSelector(&metav1.LabelSelector{MatchLabels: map[string]string{"app": "redis"}})
	if err != nil {
		t.Fatal(err)
	}
	info.Selector = sel
	s := &Service{pods: NewKubeObjects(kube), log: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	p := &plan{ref: events.BackupRef{BackupID: "b1", Workload: redisWorkload}, blueprint: "hooks", scope: scopeOf(redisWorkload, info)}

	if err := s.checkTarget(t.Context(), p, "pause", "shop", "redis-7d9f", false); err != nil {
		t.Fatalf("the workload's pod refused: %v", err)
	}
	pod = pod.DeepCopy()
	pod.Labels = map[string]string{"app": "something-else"}
	if _, err := kube.CoreV1().Pods("shop").Update(t.Context(), pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.checkTarget(t.Context(), p, "pause", "shop", "redis-7d9f", true); err != nil {
		t.Fatalf("planning accepts the pods resolved for the backup: %v", err)
	}
	err = s.checkTarget(t.Context(), p, "pause", "shop", "redis-7d9f", false)
	if !errors.Is(err, ErrExecNotAllowed) || !events.IsPermanent(err) {
		t.Fatalf("relabelled pod: %v, want a permanent ErrExecNotAllowed", err)
	}
	if err := kube.CoreV1().Pods("shop").Delete(t.Context(), "redis-7d9f", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.checkTarget(t.Context(), p, "pause", "shop", "redis-7d9f", false); !errors.Is(err, ErrExecNotAllowed) || !strings.Contains(err.Error(), "no such pod") {
		t.Fatalf("deleted pod: %v", err)
	}
}

func TestParseExecAllowList(t *testing.T) {
	l, err := ParseExecAllowList(" db-tools:app=backup-agent ; ops:team in (dba,sre),tier=tools;")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := l.String(), "db-tools:app=backup-agent;ops:team in (dba,sre),tier=tools"; got != want {
		t.Errorf("parsed %q, want %q", got, want)
	}
	if !l.allows(backupAgentPod) || l.allows(etcdPod) {
		t.Errorf("allows backup-agent %v, etcd %v", l.allows(backupAgentPod), l.allows(etcdPod))
	}
	for in, want := range map[string]string{
		"db-tools":            "want namespace:label selector",
		"db-tools:":           "want namespace:label selector",
		"Db_Tools:app=x":      "not a namespace name",
		"db-tools:app=(x":     "label selector",
		"a:app=x;kube-system": `"kube-system"`,
	} {
		if _, err := ParseExecAllowList(in); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "HOOKER_EXEC_ALLOW") {
			t.Errorf("ParseExecAllowList(%q) = %v, want an error saying %q", in, err, want)
		}
	}
}

// Options that a shell could interpret fail the backup before anything is
// frozen unless the blueprint quotes them; quoted, they arrive as one word.
func TestOptionInjectionFailsBeforeFreeze(t *testing.T) {
	attack := map[string]string{"database": "x; touch /tmp/pwned"}
	annotations := map[string]string{AnnotationBlueprint: "hooks"}

	t.Run("unquoted", func(t *testing.T) {
		bp := hooksIn("kanister", execPhase("dump", "{{ .Deployment.Namespace }}", "{{ index .Deployment.Pods 0 }}", "bash", "-c", "flush {{ .Options.database }}"))
		f := newFixture(t, Config{}, bp, annotations)
		failed := failedBeforeFreeze(t, f, f.requestWith(t, attack))
		wantAll(t, "reason", failed.Reason, `option "database"`, "phase dump", "args.command[2]", "shellquote")
		if strings.Contains(failed.Reason, "touch") {
			t.Errorf("reason repeats the injected value: %s", failed.Reason)
		}
	})

	t.Run("quoted", func(t *testing.T) {
		bp := hooksIn("kanister", execPhase("dump", "{{ .Deployment.Namespace }}", "{{ index .Deployment.Pods 0 }}", "bash", "-c", "flush {{ .Options.database | shellquote }}"))
		f := newFixture(t, Config{}, bp, annotations)
		evs := f.requestWith(t, attack)
		if !containsKind(evs, events.KindQuiesced) {
			t.Fatalf("not frozen: %v %+v", kinds(evs), evs[len(evs)-1].Payload)
		}
		if c, ok := f.exec.Last("shop", "flush"); !ok || c.Command[2] != `flush 'x; touch /tmp/pwned'` {
			t.Fatalf("command %q", c.Command)
		}
	})
}
