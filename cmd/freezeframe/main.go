// Command freezeframe requests application-consistent backups, shows their
// events, and runs the whole system in one process (`freezeframe up`).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `freezeframe: application-consistent backups on Kubernetes.

Usage:
  freezeframe up                         run all four services in one process (embedded NATS unless NATS_URL is set)
  freezeframe backup KIND/NAME -n NS     request a backup; --wait follows it to the end
  freezeframe events [filters]           list backup events; --follow keeps listening
  freezeframe status [-n NS]             what is frozen now and for how long, backups in flight, last result per workload
  freezeframe backups [-n NS]            every backup per workload: how it ended, its snapshots, retention's plan
  freezeframe restore BACKUP_ID          make claims from a backup's snapshots; --wait reports each one bound; --in-place replaces the workload's (asks first unless --yes)
  freezeframe unlock KIND/NAME -n NS     resume a frozen application now (asks first unless --yes)
  freezeframe setup                      create or update the stream, shared consumers and buckets (admin identity)
  freezeframe nats-auth --out DIR        write one nkey seed per role and a nats-server auth.conf with their permissions
  freezeframe help [COMMAND]             show help

Every command reaches NATS at $NATS_URL (default nats://127.0.0.1:4222), as
the identity in $NATS_NKEY (an nkey seed file) or $NATS_CREDS when set.
Run "freezeframe COMMAND --help" for a command's flags; "freezeframe up --help"
lists every configuration key of the services.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process
	}()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// exitError carries a specific exit status out of a command.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "up":
		err = cmdUp(ctx, rest, stdout, stderr)
	case "backup":
		err = cmdBackup(ctx, rest, stdout, stderr)
	case "events":
		err = cmdEvents(ctx, rest, stdout, stderr)
	case "status":
		err = cmdStatus(ctx, rest, stdout, stderr)
	case "backups":
		err = cmdBackups(ctx, rest, stdout, stderr, kubeSnapshots)
	case "restore":
		err = cmdRestore(ctx, rest, os.Stdin, stdout, stderr, kubeSnapshots)
	case "unlock":
		err = cmdUnlock(ctx, rest, os.Stdin, stdout, stderr)
	case "setup":
		err = cmdSetup(ctx, rest, stdout, stderr)
	case "nats-auth":
		err = cmdNATSAuth(rest, stdout, stderr)
	case "help", "--help", "-h":
		if len(rest) > 0 {
			return run(ctx, []string{rest[0], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "freezeframe: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	var ee exitError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintf(stderr, "freezeframe: %v\n", err)
		return 1
	}
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}
