package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/workload"
)

func cmdBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf connectFlags
	addConnectFlags(fs, &cf, events.RoleRequester)
	namespace := fs.String("n", "default", "namespace of the workload")
	wait := fs.Bool("wait", false, "print the backup's events as they happen, until its snapshots are ready to restore; exit 0 when it succeeded, 1 when it failed")
	waitReady := fs.Bool("wait-ready", true, "with --wait, wait for snapshot-ready too; false: stop once the application is resumed")
	timeout := fs.Duration("timeout", 30*time.Minute, "with --wait, give up after this long (exit 3)")
	blueprintName := fs.String("blueprint", "", "use this blueprint instead of the one the workload's annotation names")
	maxFreeze := fs.Duration("max-freeze", 0, "resume the application after this long at the latest (0: the hooker's default)")
	class := fs.String("snapshot-class", "", "VolumeSnapshotClass to use (default: the workload's freezeframe.io/snapshot-class annotation, else the default class of the volumes' CSI driver)")
	keep := fs.Int("keep", 0, "refused: a request cannot set retention, which deletes backups; set spec.snapshotsToKeep in a BackupPolicy or annotate the workload with freezeframe.io/snapshots-to-keep=N")
	id := fs.String("id", "", "backup id (default: a new one); requesting an id again is a no-op")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: freezeframe backup KIND/NAME -n NAMESPACE [--wait] [flags]\n\nKIND is deployment (deploy) or statefulset (sts). Flags:")
		fs.PrintDefaults()
	}
	ref, err := parseWithPositional(fs, args)
	if err != nil {
		return err
	}
	if *keep != 0 {
		// The hooker would ignore it (only a BackupPolicy's scheduled
		// request may set retention): say so now, not in an event later.
		return fmt.Errorf("--keep %d: retention deletes backups, so a request cannot set it; set spec.snapshotsToKeep in a BackupPolicy, or annotate the workload: kubectl annotate %s -n %s %s=%d", *keep, ref, *namespace, workload.AnnotationSnapshotsToKeep, *keep)
	}
	kind, name, err := events.ParseWorkloadRef(ref)
	if err != nil {
		return err
	}
	client, closeConn, err := cf.client(ctx)
	if err != nil {
		return err
	}
	defer closeConn()
	req := events.BackupRequested{
		BackupRef:     events.BackupRef{BackupID: *id, Workload: events.Workload{Cluster: cf.cluster, Namespace: *namespace, Kind: kind, Name: name}},
		RequestedBy:   "cli",
		Blueprint:     *blueprintName,
		MaxFreeze:     events.Duration(*maxFreeze),
		SnapshotClass: *class,
	}
	backupID, err := client.RequestBackup(ctx, req)
	if err != nil {
		if errors.Is(err, events.ErrRequestRefused) && backupID != "" {
			return fmt.Errorf("backup %s: %w", backupID, err)
		}
		return err
	}
	fmt.Fprintf(stdout, "backup %s requested for %s\n", backupID, req.Workload)
	if !*wait {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var first time.Time
	waitFor := client.WaitReady
	if !*waitReady {
		waitFor = client.Wait
	}
	last, err := waitFor(wctx, backupID, func(ev events.Event) {
		if first.IsZero() {
			first = ev.Time()
		}
		fmt.Fprintf(stdout, "%s  +%-9s %-16s %s\n", ev.Time().Local().Format("15:04:05.000"), round(ev.Time().Sub(first)), ev.Kind(), describe(ev))
	})
	if err != nil {
		fmt.Fprintf(stderr, "freezeframe: %v\n", err)
		return exitError{3}
	}
	if !events.Succeeded(last) {
		fmt.Fprintf(stdout, "backup %s FAILED\n", backupID)
		return exitError{1}
	}
	fmt.Fprintf(stdout, "backup %s succeeded in %s\n", backupID, round(last.Time().Sub(first)))
	return nil
}

// addConnectFlags adds the connection flags of a command that needs the
// rights of role (requester or operator) at least.
func addConnectFlags(fs *flag.FlagSet, cf *connectFlags, role events.Role) {
	fs.StringVar(&cf.natsURL, "nats", envOr("NATS_URL", "nats://127.0.0.1:4222"), "NATS server URL ($NATS_URL)")
	fs.StringVar(&cf.nkey, "nkey", os.Getenv("NATS_NKEY"), "nkey seed file of the NATS identity ($NATS_NKEY; written by freezeframe nats-auth)")
	fs.StringVar(&cf.creds, "creds", os.Getenv("NATS_CREDS"), "NATS .creds file ($NATS_CREDS)")
	fs.StringVar(&cf.tlsCA, "tls-ca", os.Getenv("NATS_TLS_CA"), "CA bundle to verify the NATS server ($NATS_TLS_CA)")
	fs.StringVar(&cf.role, "role", envOr("FREEZEFRAME_ROLE", string(role)), "role of the NATS identity, which names its reply inbox: requester, operator or admin ($FREEZEFRAME_ROLE)")
	fs.StringVar(&cf.stream, "stream", envOr("STREAM", events.DefaultStream), "event stream ($STREAM)")
	fs.StringVar(&cf.cluster, "cluster", envOr("CLUSTER", "default"), "cluster name the services run with ($CLUSTER)")
}

// parseNoPositional parses a command that takes flags only.
func parseNoPositional(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// checkOutput refuses an -o other than the table or JSON every listing
// command prints.
func checkOutput(output string) error {
	if output != "table" && output != "json" {
		return fmt.Errorf("-o %q: want table or json", output)
	}
	return nil
}

// parseWithPositional accepts flags before and after the one positional
// argument, as kubectl users type them.
func parseWithPositional(fs *flag.FlagSet, args []string) (string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return "", err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(positional) != 1 {
		fs.Usage()
		return "", fmt.Errorf("want exactly one KIND/NAME, got %d", len(positional))
	}
	return positional[0], nil
}
