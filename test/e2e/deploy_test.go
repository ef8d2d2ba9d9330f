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
			// namespaces keep a ClusterRole, and the hooker one that only gets BackupPolicies
			// (a scheduled request's retention counts only when its policy says it); the
			// hooker reads blueprints in the release's namespace until rbac.namespaces names
			// where backups run.
			for kind, want := range map[string]int{"CustomResourceDefinition": 2, "Deployment": 4, "ServiceAccount": 4, "PodDisruptionBudget": 4,
				"ClusterRole": 3, "ClusterRoleBinding": 3, "Role": 1, "RoleBinding": 1, "Job": 1} {
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

// podVolumeSecret returns the Secret behind the pod volume called name, and the items
// it projects (key -> path).
func podVolumeSecret(d *unstructured.Unstructured, name string) (string, map[string]string) {
	vols, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "volumes")
	for _, v := range vols {
		m := v.(map[string]any)
		if m["name"] != name {
			continue
		}
		secret, _, _ := unstructured.NestedString(m, "secret", "secretName")
		items, _, _ := unstructured.NestedSlice(m, "secret", "items")
		paths := map[string]string{}
		for _, it := range items {
			im := it.(map[string]any)
			paths[im["key"].(string)], _ = im["path"].(string)
		}
		return secret, paths
	}
	return "", nil
}

// With values-nats-auth.yaml each service connects as its own NATS identity (its seed
// from its own Secret, mounted read-only, passed as <SERVICE>_NATS_NKEY), over TLS with a
// client certificate, and the setup Job creates the stream and consumers as admin after
// the bundled NATS exists. A seed given as a value becomes a Secret of the chart's; the
// admin's is a hook Secret gone once setup succeeded.
func TestChartNATSIdentities(t *testing.T) {
	t.Parallel()
	helm, dir := preparedChart(t)
	ctx := ctxTimeout(t, 2*time.Minute)
	authVals := filepath.Join(chart.root, deploy.ChartDir, "values-nats-auth.yaml")
	objs, err := helm.Template(ctx, dir, "ff", "freezeframe", []string{chart.prodVals, authVals})
	if err != nil {
		t.Fatal(err)
	}
	const seedPath = "/etc/freezeframe/nats-identity/seed.nk"
	for _, svc := range deploy.Services {
		d := deploy.Find(objs, "Deployment", "ff-freezeframe-"+svc)
		if d == nil {
			t.Fatalf("no Deployment for %s", svc)
		}
		prefix := strings.ToUpper(svc) + "_"
		if v, _ := containerEnv(t, d, prefix+"NATS_NKEY"); v != seedPath {
			t.Errorf("%s: %sNATS_NKEY=%q, want %s", svc, prefix, v, seedPath)
		}
		for _, shared := range []string{"NATS_NKEY", "NATS_CREDS"} {
			if v, ok := containerEnv(t, d, shared); ok {
				t.Errorf("%s: shared %s=%q beside its own identity", svc, shared, v)
			}
		}
		secret, items := podVolumeSecret(d, "nats-identity")
		if want := "freezeframe-" + svc + "-nats"; secret != want || items["seed.nk"] != "seed.nk" || len(items) != 1 {
			t.Errorf("%s: identity volume from Secret %q items %v, want %s projecting only seed.nk", svc, secret, items, want)
		}
		for env, want := range map[string]string{
			"NATS_TLS_CA":   "/etc/freezeframe/nats-tls/ca.crt",
			"NATS_TLS_CERT": "/etc/freezeframe/nats-tls/tls.crt",
			"NATS_TLS_KEY":  "/etc/freezeframe/nats-tls/tls.key",
		} {
			if v, _ := containerEnv(t, d, env); v != want {
				t.Errorf("%s: %s=%q, want %s", svc, env, v, want)
			}
		}
		cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
		mounts, _, _ := unstructured.NestedSlice(cs[0].(map[string]any), "volumeMounts")
		for _, m := range mounts {
			mm := m.(map[string]any)
			if strings.HasPrefix(mm["name"].(string), "nats-") && mm["readOnly"] != true {
				t.Errorf("%s: %s mounted writable", svc, mm["name"])
			}
		}
	}
	job := deploy.Find(objs, "Job", "ff-freezeframe-setup")
	if job == nil {
		t.Fatal("no setup Job")
	}
	if hook := job.GetAnnotations()["helm.sh/hook"]; hook != "post-install,post-upgrade" {
		t.Errorf("setup Job hook %q with the bundled NATS, want post-install,post-upgrade", hook)
	}
	if v, _ := containerEnv(t, job, "NATS_NKEY"); v != seedPath {
		t.Errorf("setup Job: NATS_NKEY=%q, want %s", v, seedPath)
	}
	if secret, _ := podVolumeSecret(job, "nats-identity"); secret != "freezeframe-admin-nats" {
		t.Errorf("setup Job's identity from %q, want freezeframe-admin-nats", secret)
	}
	if args, _, _ := unstructured.NestedSlice(job.Object, "spec", "template", "spec", "containers"); len(args) != 1 ||
		fmt.Sprint(args[0].(map[string]any)["args"]) != "[setup]" || !strings.HasSuffix(args[0].(map[string]any)["image"].(string), "/freezeframe:0.1.0") {
		t.Errorf("setup Job container: %v", args)
	}

	// Seeds as values: the chart's Secrets; the admin's only for the hook. The setup Job
	// gets the services' settings, so that it makes their consumers to match.
	objs, err = helm.Template(ctx, dir, "ff", "freezeframe", nil,
		"natsConnection.identities.hooker.seed=SUHOOKERSEED", "natsConnection.identities.admin.seed=SUADMINSEED",
		"hooker.env.HOOKER_ACK_WAIT=45s", "env.OTEL_TRACES_EXPORTER=none")
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"HOOKER_ACK_WAIT": "45s", "OTEL_TRACES_EXPORTER": "none"} {
		if v, _ := containerEnv(t, deploy.Find(objs, "Job", "ff-freezeframe-setup"), k); v != want {
			t.Errorf("setup Job: %s=%q, want %s (the service's setting)", k, v, want)
		}
	}
	hookerSecret := deploy.Find(objs, "Secret", "ff-freezeframe-hooker-nats")
	if hookerSecret == nil {
		t.Fatal("no hooker Secret from its seed")
	}
	if v, _, _ := unstructured.NestedString(hookerSecret.Object, "stringData", "seed.nk"); v != "SUHOOKERSEED" {
		t.Errorf("hooker's Secret holds %q, want its seed", v)
	}
	if secret, _ := podVolumeSecret(deploy.Find(objs, "Deployment", "ff-freezeframe-hooker"), "nats-identity"); secret != "ff-freezeframe-hooker-nats" {
		t.Errorf("hooker's identity from %q, want ff-freezeframe-hooker-nats", secret)
	}
	if secret, _ := podVolumeSecret(deploy.Find(objs, "Deployment", "ff-freezeframe-scheduler"), "nats-identity"); secret != "" {
		t.Errorf("scheduler has no identity set, but mounts one from %q", secret)
	}
	admin := deploy.Find(objs, "Secret", "ff-freezeframe-admin-nats")
	if admin == nil {
		t.Fatal("no admin Secret from its seed")
	}
	if a := admin.GetAnnotations(); a["helm.sh/hook"] != "pre-install,pre-upgrade" || !strings.Contains(a["helm.sh/hook-delete-policy"], "hook-succeeded") {
		t.Errorf("admin Secret annotations %v: want a pre-install hook deleted once it succeeded", a)
	}
	if job := deploy.Find(objs, "Job", "ff-freezeframe-setup"); job == nil || job.GetAnnotations()["helm.sh/hook"] != "pre-install,pre-upgrade" {
		t.Errorf("setup Job with a NATS of one's own: want a pre-install,pre-upgrade hook")
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
			"natsConnection.identities.hooker.seed=SUHOOKERSEED", "natsConnection.identities.snapshotter.existingSecret=snap-nats",
			"natsConnection.identities.admin.seed=SUADMINSEED",
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

	// NATS with one identity per service (as the chart's identities and its setup Job
	// make it), and the four services as separate processes, each with its own seed.
	bus := startBus(t, filepath.Join(work, "nats"), "CLUSTER="+cluster)
	bins, err := deploy.BuildServices(ctx, chart.root, filepath.Join(c.StateDir, "e2e-services"), os.Stderr, deploy.Services...)
	if err != nil {
		t.Fatal(err)
	}
	procs := map[string]*sandbox.Process{}
	for _, svc := range deploy.Services {
		prefix := strings.ToUpper(svc) + "_"
		env := []string{
			"HOME=" + work, // no ~/.kube/config to fall back on
			"NATS_URL=" + bus.URL(),
			prefix + "NATS_NKEY=" + bus.Seed(events.Role(svc)),
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

	// Ready: the scheduler answers, and the hooker, snapshotter and notifier pull from
	// their consumers (the snapshotter after its VolumeSnapshot watch has synced, which
	// needs list and watch). The test asks as the operator, and looks at
	// the consumers as admin.
	nc, err := bus.Connect(events.RoleOperator)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	admin, err := bus.Connect(events.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	js, err := jetstream.New(admin)
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
		stream, err := js.Stream(ctx, events.DefaultStream)
		if err != nil {
			return false
		}
		// Setup made the shared durables: a service is there once it pulls from its
		// own. The hooker's replica makes its own consumer of resume triggers.
		for _, durable := range []string{events.DurableHooker, events.DurableSnapshotter, events.DurableNotifier} {
			cons, err := stream.Consumer(ctx, durable)
			if err != nil {
				return false
			}
			if info, err := cons.Info(ctx); err != nil || info.NumWaiting == 0 {
				return false
			}
		}
		for name := range stream.ConsumerNames(ctx).Name() {
			if strings.HasPrefix(name, events.HookerReplicaConsumerPrefix) && name != events.DurableHooker {
				return true
			}
		}
		return false
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
	// Nothing a service tried was refused, on any path: not by the API server (the
	// scheduler's policy runner reads BackupPolicies at start and only logs a refusal),
	// not by NATS (its own identity's permissions).
	for _, svc := range deploy.Services {
		b, _ := os.ReadFile(procs[svc].Log())
		for line := range strings.Lines(string(b)) {
			if l := strings.ToLower(line); strings.Contains(l, "forbidden") || strings.Contains(l, "permissions violation") || strings.Contains(l, "authorization violation") {
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
