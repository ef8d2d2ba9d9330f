package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	dynfake "k8s.io/client-go/dynamic/fake"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/pkg/service"
	"github.com/freezeframe/freezeframe/pkg/workload"
	"github.com/freezeframe/freezeframe/services/hooker/freeze"
	"github.com/freezeframe/freezeframe/services/hooker/lease"
	"github.com/freezeframe/freezeframe/services/hooker/podexec/podexectest"
	"github.com/freezeframe/freezeframe/services/notifier/notify"
	"github.com/freezeframe/freezeframe/services/notifier/slack"
	"github.com/freezeframe/freezeframe/services/scheduler/schedule"
	"github.com/freezeframe/freezeframe/services/snapshotter/snapshot"
	"github.com/freezeframe/freezeframe/services/snapshotter/snapshot/snapshottest"

	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
)

// The secrets a deployment has in play, run through two backups (one whose
// pre-hook fails and prints the database password on stderr), a Slack
// destination that first answers with an error echoing the token, and NATS
// connections authenticated with an nkey seed: not one of them may appear in
// any service's log, in any message of any stream (events, freeze leases,
// the Slack ledger), or in what was posted to Slack.
//
// In-process rather than the sandbox suite: the four services' code runs as
// in production (the notifier through notify.Run, every connection through
// service.OpenBus with NATS_NKEY), against a real nats-server requiring the
// nkey; only Kubernetes is a fake clientset and exec a recorder.
func TestNoSecretInLogsStreamsOrSlack(t *testing.T) {
	const (
		dbPassword = "db-Pa55w0rd-7f3e9c"
		slackToken = "xoxb-000111-SECRETslacktoken-42"
	)
	seedKP, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := seedKP.Seed()
	if err != nil {
		t.Fatal(err)
	}
	userPub, err := seedKP.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	seedFile := filepath.Join(t.TempDir(), "hooker.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}

	// nats-server accepting only the nkey.
	ns, err := server.NewServer(&server.Options{ServerName: "secrets", Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		NoSigs: true, NoLog: true, Nkeys: []*server.NkeyUser{{Nkey: userPub}}})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })

	// Slack's Web API: the first post is answered 500 with a body that
	// echoes the Authorization header, as a misbehaving proxy might.
	var slackMu sync.Mutex
	var posted []string
	slackAPI := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		slackMu.Lock()
		defer slackMu.Unlock()
		posted = append(posted, string(body))
		if len(posted) == 1 {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, "upstream refused %s", r.Header.Get("Authorization"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"ok":true,"channel":"C1","ts":"1.1"}`)
	}))
	t.Cleanup(slackAPI.Close)
	postedCount := func() int { slackMu.Lock(); defer slackMu.Unlock(); return len(posted) }

	var logs lockedBuffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	common := service.Common{Cluster: "dev", ShutdownTimeout: 5 * time.Second, LogLevel: slog.LevelDebug}
	common.NATS.URL = ns.ClientURL()
	common.NATS.NKeyFile = seedFile
	common.NATS.Stream = events.DefaultStream
	common.NATS.StreamReplicas = 1

	// The bus set up as `freezeframe setup` would, by the one identity
	// this server knows.
	setupNC, setupJS, err := service.Connect(t.Context(), common.NATS, "setup", log)
	if err != nil {
		t.Fatal(err)
	}
	if err := events.Setup(t.Context(), setupJS, events.SetupConfig{}, nil); err != nil {
		t.Fatal(err)
	}
	setupNC.Close()

	kube := redisCluster(t)
	if _, err := kube.CoreV1().Secrets("shop").Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "redis-auth", Namespace: "shop"},
		Data: map[string][]byte{"password": []byte(dbPassword)}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	snaps := snapfake.NewSimpleClientset(snapshottest.Classes()...)
	snapshottest.NewController(t, snaps, snapshottest.ControllerOptions{ReadyAtCut: true})
	// A failing hook prints the password, as redis-cli -a does on a bad
	// AUTH reply quoted back.
	ex := &podexectest.Recorder{Code: 1, Stderr: "AUTH " + dbPassword + " failed: NOAUTH"}

	group := newServiceGroup(t)
	run := group.run
	openBus := func(name string) *service.Bus {
		bus, err := service.OpenBus(t.Context(), common, name, log.With("service", name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(bus.Close)
		return bus
	}

	schedBus := openBus("scheduler")
	sched := schedule.New(schedule.Config{Common: common}, schedule.NewKubeWorkloads(kube), schedBus.Publisher, log.With("service", "scheduler"))
	run("scheduler", func(ctx context.Context) error { return sched.Run(ctx, schedBus.Conn) })

	hookBus := openBus("hooker")
	leases, err := lease.Open(t.Context(), hookBus.JetStream, lease.Config{})
	if err != nil {
		t.Fatal(err)
	}
	hooker := freeze.New(freeze.Config{Common: common, Replica: "hooker-0"}, freeze.Deps{
		Leases:     leases,
		Workloads:  workload.NewResolver(kube),
		Blueprints: freeze.NewKubeBlueprints(dynfake.NewSimpleDynamicClient(runtime.NewScheme(), redisAuthBlueprint()), false, "kanister"),
		Objects:    freeze.NewKubeObjects(kube),
		Pods:       freeze.NewKubeObjects(kube),
		Exec:       ex,
		Publisher:  hookBus.Publisher,
		Lookup:     events.NewStreamHistory(hookBus.JetStream, "").Lookup,
	}, log.With("service", "hooker"))
	run("hooker", func(ctx context.Context) error { return hooker.Run(ctx, hookBus.JetStream) })

	snapBus := openBus("snapshotter")
	snapper := snapshot.New(snapshot.Config{Common: common, CutTimeout: 10 * time.Second},
		snapshot.Deps{Workloads: workload.NewResolver(kube), Snapshots: snaps, Kube: kube}, snapBus.Publisher, log.With("service", "snapshotter"))
	run("snapshotter", func(ctx context.Context) error { return snapper.Run(ctx, snapBus.JetStream) })

	notifyCfg := notify.Config{Common: common, SlackConfig: notify.SlackConfig{
		Token: slack.Secret(slackToken), Channel: "#backups", APIURL: slackAPI.URL, Notify: "all",
		MinInterval: time.Millisecond, MaxAttempts: 3, Timeout: 5 * time.Second,
	}}
	run("notifier", func(ctx context.Context) error { return notify.Run(ctx, notifyCfg, log.With("service", "notifier")) })

	cliBus := openBus("cli")
	client, err := events.NewClient(cliBus.Conn)
	if err != nil {
		t.Fatal(err)
	}
	waitForResponder(t, cliBus.Conn)

	redis := events.Workload{Cluster: "dev", Namespace: "shop", Kind: "deployment", Name: "redis"}
	backup := func(wantSucceeded bool) {
		t.Helper()
		id, err := client.RequestBackup(t.Context(), events.BackupRequested{BackupRef: events.BackupRef{Workload: redis}, Options: map[string]string{"database": "0"}})
		if err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer wcancel()
		last, err := client.Wait(wctx, id, nil)
		if err != nil {
			t.Fatalf("backup %s: %v", id, err)
		}
		if events.Succeeded(last) != wantSucceeded {
			t.Fatalf("backup %s ended with %s %+v", id, last.Kind(), last.Payload)
		}
	}
	backup(true)
	ex.Fail("CLIENT PAUSE", 0)
	backup(false)
	if cmds := ex.Commands(); len(cmds) == 0 || !strings.Contains(cmds[0], dbPassword) {
		t.Fatalf("the hooks did not use the password, so this test proves nothing: %q", cmds)
	}
	// The failed post, its retry, and the second backup's.
	eventstest.Eventually(t, 10*time.Second, "Slack posts", func() bool { return postedCount() >= 3 })

	// Every message of every stream: the events, the freeze leases, the
	// Slack ledger.
	var stored bytes.Buffer
	streams := 0
	for name := range hookBus.JetStream.StreamNames(t.Context()).Name() {
		streams++
		dumpStream(t, hookBus.JetStream, name, &stored)
	}
	if streams < 3 || !strings.Contains(stored.String(), "backup.requested") {
		t.Fatalf("read %d streams, %d bytes: nothing to search", streams, stored.Len())
	}
	group.stop()

	slackMu.Lock()
	slackBodies := strings.Join(posted, "\n")
	slackMu.Unlock()
	if !strings.Contains(slackBodies, "redis") {
		t.Fatalf("Slack posts do not name the workload, so this test proves nothing: %s", slackBodies)
	}
	for _, place := range []struct{ name, text string }{
		{"service logs", logs.String()}, {"streams", stored.String()}, {"Slack posts", slackBodies},
	} {
		if place.text == "" {
			t.Fatalf("%s are empty", place.name)
		}
		for secretName, secret := range map[string]string{"database password": dbPassword, "Slack token": slackToken, "NATS seed": string(seed)} {
			for form, v := range secretForms(secret) {
				if strings.Contains(place.text, v) {
					t.Errorf("%s hold the %s (%s)", place.name, secretName, form)
				}
			}
		}
	}
}

// redisAuthBlueprint pauses redis with the password from Secret redis-auth.
func redisAuthBlueprint() *unstructured.Unstructured {
	phase := func(name, cmd string) map[string]any {
		return map[string]any{"func": "KubeExec", "name": name,
			"objects": map[string]any{"auth": map[string]any{"kind": "Secret", "name": "redis-auth", "namespace": "{{ .Deployment.Namespace }}"}},
			"args": map[string]any{
				"namespace": "{{ .Deployment.Namespace }}", "pod": "{{ index .Deployment.Pods 0 }}", "container": "redis",
				"command": []any{"redis-cli", "-n", "{{ .Options.database }}", "-a", `{{ index .Phases.` + name + `.Secrets.auth.Data "password" | toString }}`, cmd},
			}}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cr.kanister.io/v1alpha1", "kind": "Blueprint",
		"metadata": map[string]any{"name": "redis-hooks", "namespace": "kanister"},
		"actions": map[string]any{
			"backupPrehook":  map[string]any{"phases": []any{phase("pause", "CLIENT PAUSE 60000 WRITE")}},
			"backupPosthook": map[string]any{"phases": []any{phase("unpause", "CLIENT UNPAUSE")}},
		},
	}}
}

// secretForms are the ways a secret shows up when it leaks: as is,
// base64 (a Secret manifest, a JSON []byte), hex, JSON- or Go-quoted.
func secretForms(s string) map[string]string {
	return map[string]string{
		"as is":  s,
		"base64": base64.StdEncoding.EncodeToString([]byte(s)),
		"hex":    hex.EncodeToString([]byte(s)),
		"quoted": strings.Trim(fmt.Sprintf("%q", s), `"`),
	}
}

// dumpStream appends every message of a stream, headers and data, to w.
func dumpStream(t *testing.T, js jetstream.JetStream, name string, w *bytes.Buffer) {
	t.Helper()
	st, err := js.Stream(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(t.Context(), seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted, or expired
		}
		if err != nil {
			t.Fatalf("stream %s message %d: %v", name, seq, err)
		}
		fmt.Fprintf(w, "%s %s %v\n%s\n", name, m.Subject, m.Header, m.Data)
	}
}
