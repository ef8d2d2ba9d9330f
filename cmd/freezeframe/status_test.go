package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
	"github.com/freezeframe/freezeframe/pkg/service"
	"github.com/freezeframe/freezeframe/services/hooker/lease"
	"github.com/freezeframe/freezeframe/services/hooker/podexec/podexectest"
)

// frozenRig is a real hooker on an embedded JetStream, against fake
// clientsets, with no snapshotter: a requested backup stays frozen until
// something unlocks it.
type frozenRig struct {
	natsURL string
	client  *events.Client
	exec    *podexectest.Recorder
}

func startFrozenRig(t *testing.T) *frozenRig {
	t.Helper()
	srv := eventstest.NewServer(t)
	nc, js := srv.JetStream()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	common := service.Common{Cluster: "dev", ShutdownTimeout: 5 * time.Second}
	common.NATS.Stream = events.DefaultStream
	ex := &podexectest.Recorder{}
	hooker := newHooker(t, common, js, redisCluster(t), ex, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hooker.Run(ctx, js); err != nil && ctx.Err() == nil {
			t.Errorf("hooker: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	client, err := events.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &frozenRig{natsURL: srv.ClientURL(), client: client, exec: ex}
}

func (r *frozenRig) status(t *testing.T) status {
	t.Helper()
	code, out, errOut := cli(t, "status", "-o", "json", "--nats", r.natsURL, "--cluster", "dev")
	if code != 0 {
		t.Fatalf("status -o json exit %d: %s", code, errOut)
	}
	var st status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	return st
}

func TestStatusAndOperatorUnlock(t *testing.T) {
	r := startFrozenRig(t)
	conn := []string{"--nats", r.natsURL, "--cluster", "dev"}

	code, out, _ := cli(t, append([]string{"status"}, conn...)...)
	if code != 0 || !strings.Contains(out, "nothing is frozen") || !strings.Contains(out, "no backup in flight") {
		t.Fatalf("status with nothing going on: exit %d\n%s", code, out)
	}
	code, _, errOut := cli(t, append([]string{"unlock", "deploy/redis", "-n", "shop", "--yes"}, conn...)...)
	if code != 1 || !strings.Contains(errOut, "is not frozen") {
		t.Fatalf("unlock of a workload nothing froze: exit %d, stderr %q", code, errOut)
	}

	req, err := r.client.PublishBackupRequested(t.Context(), events.BackupRequested{RequestedBy: "test",
		BackupRef: events.BackupRef{Workload: events.Workload{Cluster: "dev", Namespace: "shop", Kind: events.KindDeployment, Name: "redis"}}})
	if err != nil {
		t.Fatal(err)
	}
	id := req.BackupID()
	var st status
	eventstest.Eventually(t, 10*time.Second, "the backup holds a frozen lease", func() bool {
		st = r.status(t)
		return len(st.Frozen) == 1 && st.Frozen[0].State == lease.StateFrozen
	})
	if f := st.Frozen[0]; f.BackupID != id || f.Workload.Name != "redis" || f.Holder != "hooker-0" || f.FrozenFor <= 0 || !f.Deadline.After(f.AcquiredAt) {
		t.Errorf("frozen %+v", f)
	}
	if len(st.InFlight) != 1 || st.InFlight[0].BackupID != id || st.InFlight[0].LastEvent != events.KindQuiesced {
		t.Errorf("in flight %+v", st.InFlight)
	}
	code, out, _ = cli(t, append([]string{"status", "-n", "shop"}, conn...)...)
	for _, want := range []string{"FROZEN NOW", "shop/deployment/redis", id, "frozen", "hooker-0", "IN FLIGHT", "quiesced"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("status table (exit %d) lacks %q:\n%s", code, want, out)
		}
	}
	t.Logf("freezeframe status:\n%s", out)

	// Without --yes it asks; anything but yes leaves the application frozen.
	var stdout, stderr bytes.Buffer
	err = cmdUnlock(t.Context(), append([]string{"deployment/redis", "-n", "shop"}, conn...), strings.NewReader("n\n"), &stdout, &stderr)
	if ee, ok := err.(exitError); !ok || ee.code != 1 || !strings.Contains(stdout.String(), "Resume shop/redis frozen") || !strings.Contains(stdout.String(), "by backup "+id+"? [y/N]") {
		t.Fatalf("declined unlock: err %v, stdout %q", err, stdout.String())
	}
	if st := r.status(t); len(st.Frozen) != 1 {
		t.Fatalf("declined unlock resumed anyway: %+v", st.Frozen)
	}

	stdout.Reset()
	if err := cmdUnlock(t.Context(), append([]string{"deployment/redis", "-n", "shop"}, conn...), strings.NewReader("y\n"), &stdout, &stderr); err != nil {
		t.Fatalf("unlock: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	for _, want := range []string{"unlock of backup " + id + " requested by " + osUser(), "resumed", "(operator; backup failed)"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("unlock output lacks %q:\n%s", want, stdout.String())
		}
	}
	if cmds := r.exec.Commands(); len(cmds) != 2 || !strings.Contains(cmds[1], "UNPAUSE") {
		t.Errorf("hooks ran %q", cmds)
	}

	evs, err := r.client.List(t.Context(), events.Filter{BackupID: id}, events.SubscribeOptions{FromStart: true})
	if err != nil {
		t.Fatal(err)
	}
	assertKinds(t, evs, events.KindRequested, events.KindQuiesced, events.KindUnlockRequested, events.KindFailed, events.KindResumed)
	if u := evs[2].Payload.(*events.UnlockRequested); u.Reason != events.ResumeOperator || u.RequestedBy != osUser() || u.Holder != "hooker-0" {
		t.Errorf("unlock %+v", u)
	}
	if f := evs[3].Payload.(*events.BackupFailed); f.Step != events.StepFreeze || !strings.Contains(f.Reason, "an operator forced the resume ("+osUser()+")") {
		t.Errorf("failure %+v", f)
	}
	if res := evs[4].Payload.(*events.Resumed); res.Reason != events.ResumeOperator || res.Succeeded {
		t.Errorf("resumed %+v", res)
	}

	eventstest.Eventually(t, 5*time.Second, "the lease released", func() bool { return len(r.status(t).Frozen) == 0 })
	st = r.status(t)
	if len(st.InFlight) != 0 || len(st.LastResults) != 1 || st.LastResults[0].Result != "failed" || st.LastResults[0].BackupID != id {
		t.Errorf("status after the unlock: %+v", st)
	}
	code, _, errOut = cli(t, append([]string{"unlock", "deploy/redis", "-n", "shop", "--yes"}, conn...)...)
	if code != 1 || !strings.Contains(errOut, "is not frozen") {
		t.Fatalf("second unlock: exit %d, stderr %q", code, errOut)
	}
}

func TestStatusUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"status", "-o", "yaml"}, {"status", "extra"}, {"unlock"}, {"unlock", "cronjob/x"}} {
		if code, _, _ := cli(t, args...); code == 0 {
			t.Errorf("freezeframe %v exited 0", args)
		}
	}
}
