package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/services/hooker/lease"
)

// cmdUnlock is an operator's forced resume: it asks the hooker holding the
// workload's freeze to run the post-hook now, through an UnlockRequested
// event (reason "operator"), and waits for the Resumed. The backup fails
// (step freeze), since its snapshot was not cut while frozen.
func cmdUnlock(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("unlock", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf connectFlags
	addConnectFlags(fs, &cf, events.RoleOperator)
	namespace := fs.String("n", "default", "namespace of the workload")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long to wait for the resume (exit 3 after)")
	bucket := fs.String("lease-bucket", envOr("HOOKER_LEASE_BUCKET", lease.DefaultBucket), "key-value bucket of the freeze leases ($HOOKER_LEASE_BUCKET)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: freezeframe unlock KIND/NAME -n NAMESPACE [--yes]\n\nResumes a frozen application now: the backup that froze it runs its post-hook and fails. Flags:")
		fs.PrintDefaults()
	}
	ref, err := parseWithPositional(fs, args)
	if err != nil {
		return err
	}
	kind, name, err := events.ParseWorkloadRef(ref)
	if err != nil {
		return err
	}
	w := events.Workload{Cluster: cf.cluster, Namespace: *namespace, Kind: kind, Name: name}
	nc, client, js, err := cf.connectJetStream()
	if err != nil {
		return err
	}
	defer nc.Close()

	store, err := lease.Bind(ctx, js, *bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("%s is not frozen: no freeze lease bucket %s (has a hooker ever run?)", w, *bucket)
	}
	if err != nil {
		return err
	}
	l, rev, err := store.Get(ctx, w)
	if errors.Is(err, lease.ErrNotHeld) {
		return fmt.Errorf("%s is not frozen: no backup holds its freeze lease", w)
	}
	if err != nil {
		return err
	}
	if !*yes {
		fmt.Fprintf(stdout, "Resume %s/%s frozen %s by backup %s? [y/N] ", w.Namespace, w.Name, round(time.Since(l.AcquiredAt)), l.BackupID)
		answer, _ := bufio.NewReader(stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			fmt.Fprintln(stdout, "not resumed")
			return exitError{1}
		}
	}
	backup := events.BackupRef{BackupID: l.BackupID, Workload: l.Workload}
	u := &events.UnlockRequested{
		BackupRef: backup,
		Reason:    events.ResumeOperator, RequestedBy: osUser(), Holder: l.Holder,
		FreezeRevision: rev,
	}
	// Its own id: an earlier unlock of this freeze revision (the watchdog's)
	// must not make the stream drop this one as a duplicate.
	id := events.DefaultID(u) + ".operator"
	if _, _, err := events.NewPublisher(js, events.SourceCLI).Publish(ctx, u, events.WithID(id)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "unlock of backup %s requested by %s; waiting for the resume\n", l.BackupID, u.RequestedBy)
	wctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	// The lease held names a live freeze (a backup is frozen at most once),
	// so its terminal event is this freeze's; the end record confirms it.
	last, err := client.Wait(wctx, l.BackupID, nil)
	if err != nil {
		fmt.Fprintf(stderr, "freezeframe: %v\n", err)
		return exitError{3}
	}
	fmt.Fprintf(stdout, "%s  %-16s %s\n", last.Time().Local().Format("15:04:05.000"), last.Kind(), describe(last))
	if last.Kind() != events.KindResumed {
		return exitError{1} // the post-hook failed: the application may still be frozen
	}
	// The end is recorded before Resumed is published: without it, that
	// Resumed was not this freeze's.
	if end, err := store.Ended(wctx, backup); err != nil || !end.Resumed {
		fmt.Fprintf(stderr, "freezeframe: the freeze of backup %s has not ended: %v\n", l.BackupID, err)
		return exitError{1}
	}
	return nil
}

// osUser names the operator in the event, as the hooker's logs and the
// notifications will show it.
func osUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "unknown"
}
