package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/test/e2e/demo"
	"github.com/freezeframe/freezeframe/test/e2e/deploy"
	"github.com/freezeframe/freezeframe/test/e2e/harness"
	"github.com/freezeframe/freezeframe/test/sandbox"
)

// sandboxKubeVersion is what `helm template` assumes: the sandbox's apiserver.
const sandboxKubeVersion = "v1.34.4"

var (
	chartOnce sync.Once
	chartErr  error
	chart     struct {
		helm     deploy.Helm
		root     string
		dir      string // the chart copy with its NATS dependency
		natsSrc  deploy.NATSSource
		natsWhy  string
		prodVals string
	}
)

// preparedChart builds helm (cached) and copies the chart with its NATS dependency, once
// per test binary.
func preparedChart(t *testing.T) (deploy.Helm, string) {
	t.Helper()
	c := sandbox.Shared(t)
	chartOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		root, err := harness.RepoRoot()
		if err != nil {
			chartErr = err
			return
		}
		bin, err := deploy.EnsureHelm(ctx, root, os.Stderr)
		if err != nil {
			chartErr = err
			return
		}
		dir := filepath.Join(c.StateDir, "e2e-chart")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			chartErr = err
			return
		}
		chart.helm = deploy.Helm{Bin: bin, KubeVersion: sandboxKubeVersion}
		chart.root = root
		chart.dir, chart.natsSrc, chart.natsWhy, chartErr = deploy.PrepareChart(ctx, root, dir)
		chart.prodVals = filepath.Join(root, deploy.ChartDir, "values-production.yaml")
	})
	if chartErr != nil {
		t.Fatal(chartErr)
	}
	if chart.natsSrc == deploy.NATSFromStandIn {
		t.Logf("NATS chart: a stand-in that renders nothing (the upstream chart could not be fetched: %s); set FREEZEFRAME_NATS_CHART to a copy of nats-io/k8s helm/charts/nats to render it", chart.natsWhy)
	} else {
		t.Logf("NATS chart from %s", chart.natsSrc)
	}
	return chart.helm, chart.dir
}

// env returns the value of a container's env var, and whether it is set.
func containerEnv(t *testing.T, d *unstructured.Unstructured, name string) (string, bool) {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	for _, c := range cs {
		envs, _, _ := unstructured.NestedSlice(c.(map[string]any), "env")
		for _, e := range envs {
			m := e.(map[string]any)
			if m["name"] == name {
				v, _ := m["value"].(string)
				return v, true
			}
		}
	}
	return "", false
}

// The chart lints and renders with the default values and with the production values
// (NATS dependency enabled), and what it renders is what the README promises.
func TestChartRender(t *testing.T) {
	t.Parallel()
	helm, dir := preparedChart(t)
	ctx := ctxTimeout(t, 2*time.Minute)
	for _, tc := range []struct {
		name   string
		values []string
	}{
		{"default", nil},
		{"production", []string{chart.prodVals}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"lint", dir, "--strict", "--kube-version", sandboxKubeVersion}
			for _, v := range tc.values {
				args = append(args, "-f", v)
			}
			if out, err := helm.Run(ctx, args...); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			objs, err := helm.Template(ctx, dir, "ff", "freezeframe", tc.values)
			if err != nil {
				t.Fatal(err)
			}
			kinds := map[string]int{}
			for _, o := range objs {
				kinds[o.GetKind()]++
			}
			t.Logf("rendered %d objects: %v", len(objs), kinds)
			// RBAC is namespaced by default: the two services that watch or list across all
			// namespaces keep a ClusterRole; the hooker only reads blueprints in the release's
			// namespace until rbac.namespaces names where backups run.
			for kind, want := range map[string]int{"CustomResourceDefinition": 2, "Deployment": 4, "ServiceAccount": 4, "PodDisruptionBudget": 4,
				"ClusterRole": 2, "ClusterRoleBinding": 2, "Role": 1, "RoleBinding": 1} {
				got := 0
				for _, o := range deploy.Select(objs, kind) {
					if o.GetLabels()["app.kubernetes.io/part-of"] == "freezeframe" || kind == "CustomResourceDefinition" {
						got++
					}
				}
				if got != want {
					t.Errorf("%d freezeframe %s objects, want %d", got, kind, want)
				}
			}
			replicas := "1"
			wantURL := "nats://nats.freezeframe.svc:4222"
			if tc.name == "production" {
				replicas = "3"
				wantURL = "nats://ff-nats.freezeframe.svc:4222"
			}
			for _, svc := range deploy.Services {
				d := deploy.Find(objs, "Deployment", "ff-freezeframe-"+svc)
				if d == nil {
					t.Fatalf("no Deployment for %s", svc)
				}
				if v, _ := containerEnv(t, d, "STREAM_REPLICAS"); v != replicas {
					t.Errorf("%s: STREAM_REPLICAS=%q, want %s", svc, v, replicas)
				}
				if v, _ := containerEnv(t, d, "NATS_URL"); v != wantURL {
					t.Errorf("%s: NATS_URL=%q, want %s", svc, v, wantURL)
				}
				if v, _ := containerEnv(t, d, "HTTP_ADDR"); v != ":8080" {
					t.Errorf("%s: HTTP_ADDR=%q", svc, v)
				}
				pod, _, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec")
				if nonRoot, _, _ := unstructured.NestedBool(pod, "securityContext", "runAsNonRoot"); !nonRoot {
					t.Errorf("%s: pod may run as root", svc)
				}
				c := pod["containers"].([]any)[0].(map[string]any)
				if ro, _, _ := unstructured.NestedBool(c, "securityContext", "readOnlyRootFilesystem"); !ro {
					t.Errorf("%s: root filesystem writable", svc)
				}
				for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
					if p, _, _ := unstructured.NestedString(c, probe, "httpGet", "path"); p != path {
						t.Errorf("%s: %s path %q, want %s", svc, probe, p, path)
					}
				}
				ports, _, _ := unstructured.NestedSlice(c, "ports")
				if len(ports) != 1 || ports[0].(map[string]any)["name"] != "http" || ports[0].(map[string]any)["containerPort"] != int64(8080) {
					t.Errorf("%s: ports %v, want http 8080", svc, ports)
				}
				automount, _, _ := unstructured.NestedBool(pod, "automountServiceAccountToken")
				if automount != (svc != "notifier") {
					t.Errorf("%s: automountServiceAccountToken %v", svc, automount)
				}
			}
			if tc.name == "production" && chart.natsSrc != deploy.NATSFromStandIn {
				var sts *unstructured.Unstructured
				for _, o := range deploy.Select(objs, "StatefulSet") {
					if strings.Contains(o.GetName(), "nats") {
						sts = o
					}
				}
				if sts == nil {
					t.Fatal("production values render no NATS StatefulSet")
				}
				if n, _, _ := unstructured.NestedInt64(sts.Object, "spec", "replicas"); n != 3 {
					t.Errorf("NATS StatefulSet %s has %d replicas, want 3", sts.GetName(), n)
				}
			}
		})
	}
}

// The chart's CRDs are deploy/crds/, byte for byte: deploy/crds is the one source
// (`make helm-crds` copies it).
func TestChartCRDsMatchDeploy(t *testing.T) {
	t.Parallel()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.Glob(filepath.Join(root, deploy.CRDDir, "*.yaml"))
	got, _ := filepath.Glob(filepath.Join(root, deploy.ChartDir, "crds", "*.yaml"))
	base := func(ps []string) []string {
		var out []string
		for _, p := range ps {
			out = append(out, filepath.Base(p))
		}
		return out
	}
	if !slices.Equal(base(want), base(got)) || len(want) == 0 {
		t.Fatalf("chart crds/ holds %v, deploy/crds holds %v: run make helm-crds", base(got), base(want))
	}
	for _, p := range want {
		a, _ := os.ReadFile(p)
		b, _ := os.ReadFile(filepath.Join(root, deploy.ChartDir, "crds", filepath.Base(p)))
		if string(a) != string(b) {
			t.Errorf("%s differs from the chart's copy: run make helm-crds", filepath.Base(p))
		}
	}
}

// Everything the chart renders is accepted by the sandbox's apiserver: CRDs applied for
// real, the rest with a server-side dry run.
func TestChartDryRun(t *testing.T) {
	t.Parallel()
	helm, dir := preparedChart(t)
	installCRD(t)
	c := sandbox.Shared(t)
	ctx := ctxTimeout(t, 2*time.Minute)
	ns := "ff-dryrun"
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		values []string
		set    []string
	}{
		{"default", nil, nil},
		{"production", []string{chart.prodVals}, nil},
		// Every optional part: NATS credentials and TLS, Slack, Secrets for blueprints,
		// RBAC restricted to namespaces.
		{"options", nil, []string{
			"natsConnection.auth.secretName=nats-creds", "natsConnection.auth.credsKey=ff.creds",
			"natsConnection.tls.secretName=nats-tls", "natsConnection.tls.caKey=ca.crt",
			"natsConnection.tls.certKey=tls.crt", "natsConnection.tls.keyKey=tls.key",
			"notifier.slack.secretName=slack", "notifier.slack.webhookURLKey=url", "notifier.slack.tokenKey=token",
			"hooker.objectAccess[0].namespace=" + ns, "hooker.objectAccess[0].secrets[0]=redis",
			"rbac.namespaces[0]=" + ns, "env.OTEL_TRACES_EXPORTER=none",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := helm.Template(ctx, dir, "ffdry-"+tc.name, ns, tc.values, tc.set...)
			if err != nil {
				t.Fatal(err)
			}
			crds, err := deploy.Encode(deploy.Select(objs, "CustomResourceDefinition"))
			if err != nil {
				t.Fatal(err)
			}
			if out, err := c.KubectlStdin(ctx, strings.NewReader(crds), "apply", "--server-side", "--force-conflicts", "--field-manager=e2e-chart", "-f", "-"); err != nil {
				t.Fatalf("apply CRDs: %v\n%s", err, out)
			}
			rest := deploy.Without(objs, "CustomResourceDefinition")
			manifests, err := deploy.Encode(rest)
			if err != nil {
				t.Fatal(err)
			}
			out, err := c.KubectlStdin(ctx, strings.NewReader(manifests), "apply", "--server-side", "--dry-run=server", "--field-manager=e2e-chart", "-n", ns, "-f", "-")
			if err != nil {
				t.Fatalf("server-side dry run: %v\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != len(rest) {
				t.Errorf("dry run answered %d lines for %d objects:\n%s", len(lines), len(rest), out)
			}
			t.Logf("apiserver accepted %d objects (server dry run) and %d CRDs", len(rest), len(objs)-len(rest))
		})
	}
}

// Each service runs as its own process with a kubeconfig holding only its ServiceAccount's
// token, RBAC as the chart renders it, and a backup of a real Redis completes: the RBAC is
// enough. Then SubjectAccessReviews show it is no more than that.
func TestServiceAccountBackup(t *testing.T) {
	t.Parallel()
	helm, dir := preparedChart(t)
	installCRD(t)
	c := sandbox.Shared(t)
	ctx := ctxTimeout(t, 4*time.Minute)
	const (
		release = "ffsa"
		ns      = "ff-sa"
		appNS   = "ff-sa-app"
		cluster = "ffsa"
	)
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}

	// The chart's ServiceAccounts and RBAC, for real. The hooker may read the Redis Secret
	// its blueprint names, and nothing else.
	objs, err := helm.Template(ctx, dir, release, ns, nil,
		"hooker.objectAccess[0].namespace="+appNS, "hooker.objectAccess[0].secrets[0]="+demo.Secret,
		"rbac.namespaces[0]="+appNS, "hooker.namespacedBlueprints=true")
	if err != nil {
		t.Fatal(err)
	}
	rbac := deploy.Select(objs, "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
	manifests, err := deploy.Encode(rbac)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureNamespace(ctx, appNS); err != nil {
		t.Fatal(err)
	}
	if out, err := c.KubectlStdin(ctx, strings.NewReader(manifests), "apply", "--server-side", "--field-manager=e2e-chart", "-f", "-"); err != nil {
		t.Fatalf("apply RBAC: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		for _, o := range deploy.Select(rbac, "ClusterRole", "ClusterRoleBinding") {
			_, _ = c.Kubectl(context.Background(), "delete", "--ignore-not-found", strings.ToLower(o.GetKind()), o.GetName())
		}
	})

	// A kubeconfig per service from a TokenRequest for its ServiceAccount. The notifier
	// gets none: it has no Kubernetes access to prove.
	work := t.TempDir()
	kubeconfigs := map[string]string{}
	for _, svc := range []string{"scheduler", "hooker", "snapshotter"} {
		sa := release + "-freezeframe-" + svc
		tr, err := c.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("token for %s: %v", sa, err)
		}
		kubeconfigs[svc] = filepath.Join(work, svc+".kubeconfig")
		if err := deploy.WriteKubeconfig(kubeconfigs[svc], c.Config, tr.Status.Token, ns); err != nil {
			t.Fatal(err)
		}
	}

	// The application: the demo's Redis, its Secret and Blueprint.
	pass := randomHex(8)
	if _, err := harness.Apply(ctx, c, demo.AppManifests(appNS, pass)); err != nil {
		t.Fatal(err)
	}
	applyBlueprint(t, appNS, demo.BlueprintManifest(appNS))
	pod := waitPodRunning(t, appNS, "app=redis")
	if err := c.WaitExec(ctx, appNS, pod, demo.Container); err != nil {
		t.Fatal(err)
	}

	// NATS, and the four services as separate processes.
	natsSrv := eventstest.NewServer(t)
	bins, err := deploy.BuildServices(ctx, chart.root, filepath.Join(c.StateDir, "e2e-services"), os.Stderr, deploy.Services...)
	if err != nil {
		t.Fatal(err)
	}
	procs := map[string]*sandbox.Process{}
	for _, svc := range deploy.Services {
		prefix := strings.ToUpper(svc) + "_"
		env := []string{
			"HOME=" + work, // no ~/.kube/config to fall back on
			"NATS_URL=" + natsSrv.ClientURL(),
			"CLUSTER=" + cluster,
			"SHUTDOWN_TIMEOUT=5s",
			"LOG_LEVEL=debug",
			"HTTP_ADDR=127.0.0.1:0", // four processes on one host: no fixed port
			"OTEL_TRACES_EXPORTER=none",
			"OTEL_METRICS_EXPORTER=none",
		}
		if kc, ok := kubeconfigs[svc]; ok {
			env = append(env, prefix+"KUBECONFIG="+kc)
		} else {
			// The notifier must not find a cluster anywhere.
			env = append(env, "KUBERNETES_SERVICE_HOST=", "KUBERNETES_SERVICE_PORT=")
		}
		switch svc {
		case "hooker":
			// The demo's blueprint lives in the application's namespace.
			env = append(env, "HOOKER_BLUEPRINT_NAMESPACE="+ns, "HOOKER_POD_NAME=hooker-sa-0", "HOOKER_NAMESPACED_BLUEPRINTS=true")
		case "snapshotter":
			env = append(env, "SNAPSHOTTER_WATCH_SYNC_TIMEOUT=30s")
		}
		p, err := deploy.Start(svc, bins[svc], work, env)
		if err != nil {
			t.Fatal(err)
		}
		procs[svc] = p
	}
	t.Cleanup(func() {
		for _, svc := range slices.Backward(deploy.Services) {
			procs[svc].Stop(10 * time.Second)
		}
		if t.Failed() || os.Getenv("FREEZEFRAME_E2E_LOGS") != "" {
			for _, svc := range deploy.Services {
				t.Logf("%s log (%s), last lines:\n%s", svc, procs[svc].Log(), procs[svc].LogTail(40))
			}
		}
	})

	// Ready: the scheduler answers, and the hooker's, snapshotter's and notifier's
	// consumers exist (the snapshotter creates its consumer after its VolumeSnapshot watch
	// has synced, which needs list and watch).
	nc := natsSrv.Connect()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	alive := func() error {
		for _, svc := range deploy.Services {
			if err := procs[svc].Exited(); err != nil {
				return err
			}
		}
		return nil
	}
	var dead error
	eventstest.Eventually(t, 60*time.Second, "services ready", func() bool {
		if dead = alive(); dead != nil {
			return true
		}
		if _, err := nc.Request(events.APISubject(cluster), []byte("{}"), time.Second); err != nil {
			return false
		}
		stream, err := js.Stream(ctx, "FREEZEFRAME")
		if err != nil {
			return false
		}
		names := map[string]bool{}
		for name := range stream.ConsumerNames(ctx).Name() {
			names[name] = true
			if strings.HasPrefix(name, "hooker-") {
				names["hooker-triggers"] = true
			}
		}
		return names["hooker"] && names["hooker-triggers"] && names["snapshotter"] && names["notifier"]
	})
	if dead != nil {
		t.Fatal(dead)
	}

	// A backup through the scheduler, with the Go client.
	client, err := events.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	id, err := client.RequestBackup(ctx, events.BackupRequested{
		BackupRef:   events.BackupRef{Workload: events.Workload{Cluster: cluster, Namespace: appNS, Kind: events.KindDeployment, Name: demo.Workload}},
		RequestedBy: "e2e/" + t.Name(),
	})
	if err != nil {
		t.Fatalf("request backup: %v", err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var evs []events.Event
	last, err := client.Wait(waitCtx, id, func(ev events.Event) { evs = append(evs, ev) })
	if err != nil {
		t.Fatalf("wait for backup %s: %v\n%s", id, err, harness.Timeline(evs))
	}
	t.Logf("backup %s in %s:\n%s", id, time.Since(start).Round(time.Millisecond), harness.Timeline(evs))
	if last.Kind() != events.KindResumed || !events.Succeeded(last) {
		t.Fatalf("backup ended with %s (succeeded %v), want a successful resumed", last.Kind(), events.Succeeded(last))
	}
	snap, ok := harness.Payload[events.Snapshotted](evs)
	if !ok || len(snap.Snapshots) != 1 {
		t.Fatalf("snapshotted: %+v", snap)
	}
	vs, err := c.Snapshots.SnapshotV1().VolumeSnapshots(appNS).Get(ctx, snap.Snapshots[0].Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the backup's VolumeSnapshot: %v", err)
	}
	if src := vs.Spec.Source.PersistentVolumeClaimName; src == nil || *src != demo.Claim {
		t.Errorf("VolumeSnapshot %s of %v, want %s", vs.Name, src, demo.Claim)
	}
	if err := alive(); err != nil {
		t.Fatal(err)
	}
	// Nothing a service tried was refused, on any path (the scheduler's policy runner
	// reads BackupPolicies at start and only logs a refusal).
	for _, svc := range deploy.Services {
		b, _ := os.ReadFile(procs[svc].Log())
		for line := range strings.Lines(string(b)) {
			if strings.Contains(strings.ToLower(line), "forbidden") {
				t.Errorf("%s was refused something: %s", svc, strings.TrimSpace(line))
			}
		}
	}

	// No broader: what each ServiceAccount may and may not do.
	type check struct {
		verb, group, resource, sub, ns, name string
		allowed                              bool
	}
	core := ""
	checks := map[string][]check{
		"scheduler": {
			{"get", "apps", "deployments", "", appNS, "", true},
			{"list", "freezeframe.io", "backuppolicies", "", "", "", true},
			{"update", "freezeframe.io", "backuppolicies", "status", appNS, "", true},
			{"update", "freezeframe.io", "backuppolicies", "", appNS, "", false},
			{"create", core, "pods", "exec", appNS, "", false},
			{"get", core, "secrets", "", appNS, demo.Secret, false},
			{"create", "snapshot.storage.k8s.io", "volumesnapshots", "", appNS, "", false},
			{"update", "apps", "deployments", "", appNS, "", false},
		},
		"hooker": {
			{"create", core, "pods", "exec", appNS, "", true},
			{"get", core, "secrets", "", appNS, demo.Secret, true},
			{"get", "cr.kanister.io", "blueprints", "", ns, "", true},
			{"get", "cr.kanister.io", "blueprints", "", appNS, "", true},
			// pods/exec only where backups run (rbac.namespaces).
			{"create", core, "pods", "exec", "kube-system", "", false},
			{"get", core, "pods", "exec", "kube-system", "", false},
			{"get", core, "pods", "", "kube-system", "", false},
			{"get", "freezeframe.io", "backuppolicies", "", appNS, "", true},
			{"list", "freezeframe.io", "backuppolicies", "", "", "", false},
			{"delete", core, "pods", "", appNS, "", false},
			{"list", core, "secrets", "", "", "", false},
			{"list", core, "secrets", "", appNS, "", false},
			{"get", core, "secrets", "", appNS, "other", false},
			{"get", core, "secrets", "", "kube-system", demo.Secret, false},
			{"create", "snapshot.storage.k8s.io", "volumesnapshots", "", appNS, "", false},
			{"create", "freezeframe.io", "blueprints", "", appNS, "", false},
			{"update", "apps", "deployments", "", appNS, "", false},
		},
		"snapshotter": {
			{"create", "snapshot.storage.k8s.io", "volumesnapshots", "", appNS, "", true},
			{"watch", "snapshot.storage.k8s.io", "volumesnapshots", "", "", "", true},
			{"create", "groupsnapshot.storage.k8s.io", "volumegroupsnapshots", "", appNS, "", true},
			{"create", core, "pods", "exec", appNS, "", false},
			{"get", core, "pods", "exec", appNS, "", false},
			{"get", core, "secrets", "", appNS, demo.Secret, false},
			{"patch", core, "persistentvolumeclaims", "", appNS, "", true},
			{"create", core, "persistentvolumeclaims", "", appNS, "", true},
			{"create", "snapshot.storage.k8s.io", "volumesnapshotcontents", "", "", "", true},
			{"delete", core, "persistentvolumeclaims", "", appNS, "", false},
			{"update", core, "persistentvolumeclaims", "", appNS, "", false},
			{"delete", "snapshot.storage.k8s.io", "volumesnapshotcontents", "", "", "", false},
			{"update", "snapshot.storage.k8s.io", "volumesnapshots", "", appNS, "", false},
		},
		"notifier": {
			{"get", core, "pods", "", appNS, "", false},
			{"list", core, "namespaces", "", "", "", false},
			{"get", core, "secrets", "", ns, "", false},
			{"get", "apps", "deployments", "", appNS, "", false},
			{"list", "freezeframe.io", "backuppolicies", "", "", "", false},
		},
	}
	for _, svc := range deploy.Services {
		user := "system:serviceaccount:" + ns + ":" + release + "-freezeframe-" + svc
		for _, ch := range checks[svc] {
			sar, err := c.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User:   user,
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
				ResourceAttributes: &authorizationv1.ResourceAttributes{
					Verb: ch.verb, Group: ch.group, Resource: ch.resource, Subresource: ch.sub, Namespace: ch.ns, Name: ch.name,
				},
			}}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			what := fmt.Sprintf("%s %s %s", svc, ch.verb, strings.Trim(ch.resource+"/"+ch.sub, "/"))
			if ch.group != "" {
				what += "." + ch.group
			}
			if ch.name != "" {
				what += " " + ch.name
			}
			if ch.ns != "" {
				what += " in " + ch.ns
			} else {
				what += " cluster-wide"
			}
			if sar.Status.Allowed != ch.allowed {
				t.Errorf("%s: allowed=%v, want %v (%s)", what, sar.Status.Allowed, ch.allowed, sar.Status.Reason)
			}
		}
	}
}

// Where the chart lets the hooker exec: nowhere by default, in rbac.namespaces and the
// exec allow-list's namespaces when set, everywhere only with rbac.clusterWide=true.
func TestChartExecGrants(t *testing.T) {
	t.Parallel()
	helm, dir := preparedChart(t)
	ctx := ctxTimeout(t, 2*time.Minute)
	for _, tc := range []struct {
		name        string
		set         []string
		wantRoles   []string // namespaces with a Role granting pods/exec
		wantCluster bool     // a ClusterRole granting pods/exec
		wantEnv     string   // HOOKER_EXEC_ALLOW
	}{
		{"default", nil, nil, false, ""},
		{"namespaces", []string{"rbac.namespaces={shop,team-a}"}, []string{"shop", "team-a"}, false, ""},
		{"allow-list", []string{"rbac.namespaces={shop}", "hooker.execAllow[0].namespace=db-tools", "hooker.execAllow[0].podSelector=app=backup-agent"},
			[]string{"db-tools", "shop"}, false, "db-tools:app=backup-agent"},
		{"cluster-wide", []string{"rbac.clusterWide=true"}, nil, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := helm.Template(ctx, dir, "ff", "freezeframe", nil, tc.set...)
			if err != nil {
				t.Fatal(err)
			}
			grantsExec := func(o *unstructured.Unstructured) bool {
				rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
				for _, r := range rules {
					res, _, _ := unstructured.NestedStringSlice(r.(map[string]any), "resources")
					if slices.Contains(res, "pods/exec") {
						return true
					}
				}
				return false
			}
			var roles []string
			for _, o := range deploy.Select(objs, "Role") {
				if grantsExec(o) {
					roles = append(roles, o.GetNamespace())
				}
			}
			slices.Sort(roles)
			if !slices.Equal(roles, tc.wantRoles) {
				t.Errorf("pods/exec granted by Roles in %v, want %v", roles, tc.wantRoles)
			}
			cluster := false
			for _, o := range deploy.Select(objs, "ClusterRole") {
				cluster = cluster || grantsExec(o)
			}
			if cluster != tc.wantCluster {
				t.Errorf("pods/exec in a ClusterRole: %v, want %v", cluster, tc.wantCluster)
			}
			d := deploy.Find(objs, "Deployment", "ff-freezeframe-hooker")
			if d == nil {
				t.Fatal("no hooker Deployment")
			}
			if v, _ := containerEnv(t, d, "HOOKER_EXEC_ALLOW"); v != tc.wantEnv {
				t.Errorf("HOOKER_EXEC_ALLOW=%q, want %q", v, tc.wantEnv)
			}
			if v, _ := containerEnv(t, d, "HOOKER_NAMESPACED_BLUEPRINTS"); v != "false" {
				t.Errorf("HOOKER_NAMESPACED_BLUEPRINTS=%q, want false by default", v)
			}
		})
	}
	// Both at once is a mistake, refused.
	if _, err := helm.Template(ctx, dir, "ff", "freezeframe", nil, "rbac.clusterWide=true", "rbac.namespaces={shop}"); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("clusterWide with namespaces: %v, want a refusal", err)
	}
}
