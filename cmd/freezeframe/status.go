package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/services/hooker/lease"
)

// status is what `freezeframe status` reports: the freeze leases held now
// (from the hooker's key-value bucket, the source of truth for what is
// frozen), the backups whose freeze has not ended, and how the last backup
// of each workload ended (both from the event stream).
type status struct {
	Frozen      []frozenApp  `json:"frozen"`
	InFlight    []backupView `json:"inFlight"`
	LastResults []backupView `json:"lastResults"`
}

type frozenApp struct {
	Workload   events.Workload `json:"workload"`
	BackupID   string          `json:"backupId"`
	State      lease.State     `json:"state"`
	Holder     string          `json:"holder"`
	FrozenFor  events.Duration `json:"frozenFor"`
	AcquiredAt time.Time       `json:"acquiredAt"`
	Deadline   time.Time       `json:"deadline"`
}

type backupView struct {
	BackupID    string          `json:"backupId"`
	Workload    events.Workload `json:"workload"`
	RequestedAt time.Time       `json:"requestedAt,omitzero"`
	// LastEvent is the kind of the backup's latest event.
	LastEvent events.Kind `json:"lastEvent"`
	At        time.Time   `json:"at"`
	// Result is "succeeded" or "failed" once the backup ended.
	Result string `json:"result,omitempty"`
	Detail string `json:"detail,omitempty"`
}

func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf connectFlags
	addConnectFlags(fs, &cf, events.RoleOperator)
	namespace := fs.String("n", "", "only this namespace (default: all)")
	output := fs.String("o", "table", "output: table or json")
	since := fs.Duration("since", 7*24*time.Hour, "read the events of this long ago onwards, for backups in flight and last results")
	bucket := fs.String("lease-bucket", envOr("HOOKER_LEASE_BUCKET", lease.DefaultBucket), "key-value bucket of the freeze leases ($HOOKER_LEASE_BUCKET)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: freezeframe status [-n NAMESPACE] [-o table|json]\n\nApplications frozen now and for how long, backups in flight, and the last result per workload. Flags:")
		fs.PrintDefaults()
	}
	if err := parseNoPositional(fs, args); err != nil {
		return err
	}
	if err := checkOutput(*output); err != nil {
		return err
	}
	nc, client, js, err := cf.connectJetStream()
	if err != nil {
		return err
	}
	defer nc.Close()

	st, err := readStatus(ctx, client, js, *bucket, *namespace, time.Now().Add(-*since))
	if err != nil {
		return err
	}
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	return st.print(stdout)
}

func readStatus(ctx context.Context, client *events.Client, js jetstream.JetStream, bucket, namespace string, since time.Time) (status, error) {
	st := status{Frozen: []frozenApp{}, InFlight: []backupView{}, LastResults: []backupView{}}
	store, err := lease.Bind(ctx, js, bucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
		// No hooker ever ran: nothing was ever frozen.
	case err != nil:
		return st, err
	default:
		leases, err := store.List(ctx)
		if err != nil && len(leases) == 0 {
			return st, err
		}
		// Read after the list: a freeze taken while it was read is not
		// shown as frozen for a negative time.
		now := time.Now()
		for _, l := range leases {
			if namespace != "" && l.Workload.Namespace != namespace {
				continue
			}
			st.Frozen = append(st.Frozen, frozenApp{Workload: l.Workload, BackupID: l.BackupID, State: l.State, Holder: l.Holder,
				FrozenFor: events.Duration(now.Sub(l.AcquiredAt)), AcquiredAt: l.AcquiredAt, Deadline: l.Deadline})
		}
		slices.SortFunc(st.Frozen, func(a, b frozenApp) int { return cmp.Compare(b.FrozenFor, a.FrozenFor) })
	}

	evs, err := client.List(ctx, events.Filter{Namespace: namespace}, events.SubscribeOptions{Since: since})
	if err != nil {
		return st, err
	}
	byBackup := map[string]*backupView{}
	var order []string
	for _, ev := range evs {
		if events.RestoreIDOf(ev) != "" {
			continue // a restore of a backup says nothing of how the backup went
		}
		v, ok := byBackup[ev.BackupID()]
		if !ok {
			v = &backupView{BackupID: ev.BackupID(), Workload: ev.Workload()}
			byBackup[ev.BackupID()] = v
			order = append(order, ev.BackupID())
		}
		v.LastEvent, v.At = ev.Kind(), ev.Time()
		if ev.Kind() == events.KindRequested {
			v.RequestedAt = ev.Time()
		}
		// The last word on a backup: its terminal event, or the readiness
		// (or its failure) that may follow a successful resume.
		if events.IsTerminal(ev) || ev.Kind() == events.KindSnapshotReady {
			v.Result = "failed"
			if events.Succeeded(ev) {
				v.Result = "succeeded"
			}
			v.Detail = describe(ev)
		}
	}
	last := map[string]*backupView{}
	for _, id := range order {
		v := byBackup[id]
		if v.Result == "" {
			if v.RequestedAt.IsZero() {
				continue // requested before the window: its start is not known here
			}
			st.InFlight = append(st.InFlight, *v)
			continue
		}
		last[v.Workload.Key()] = v // stream order: the latest wins
	}
	for _, v := range last {
		st.LastResults = append(st.LastResults, *v)
	}
	slices.SortFunc(st.LastResults, func(a, b backupView) int { return cmp.Compare(a.Workload.String(), b.Workload.String()) })
	return st, nil
}

func (st status) print(out io.Writer) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	now := time.Now()
	fmt.Fprintln(tw, "FROZEN NOW")
	if len(st.Frozen) == 0 {
		fmt.Fprintln(tw, "  nothing is frozen")
	} else {
		fmt.Fprintln(tw, "  WORKLOAD\tFROZEN FOR\tSTATE\tBACKUP\tHOLDER\tDEADLINE")
		for _, f := range st.Frozen {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s (in %s)\n", shortWorkload(f.Workload), round(f.FrozenFor.Std()), f.State, f.BackupID, f.Holder,
				f.Deadline.Local().Format("15:04:05"), round(f.Deadline.Sub(now)))
		}
	}
	fmt.Fprintln(tw, "\nIN FLIGHT")
	if len(st.InFlight) == 0 {
		fmt.Fprintln(tw, "  no backup in flight")
	} else {
		fmt.Fprintln(tw, "  WORKLOAD\tBACKUP\tREQUESTED\tLAST EVENT")
		for _, b := range st.InFlight {
			fmt.Fprintf(tw, "  %s\t%s\t%s ago\t%s %s ago\n", shortWorkload(b.Workload), b.BackupID, round(now.Sub(b.RequestedAt)), b.LastEvent, round(now.Sub(b.At)))
		}
	}
	fmt.Fprintln(tw, "\nLAST RESULT")
	if len(st.LastResults) == 0 {
		fmt.Fprintln(tw, "  no backup ended in the window (--since)")
	} else {
		fmt.Fprintln(tw, "  WORKLOAD\tRESULT\tENDED\tBACKUP\tDETAIL")
		for _, b := range st.LastResults {
			fmt.Fprintf(tw, "  %s\t%s\t%s ago\t%s\t%s\n", shortWorkload(b.Workload), b.Result, round(now.Sub(b.At)), b.BackupID, b.Detail)
		}
	}
	return tw.Flush()
}

// shortWorkload is how a table names a workload: namespace/kind/name.
func shortWorkload(w events.Workload) string {
	return w.Namespace + "/" + strings.ToLower(w.Kind) + "/" + w.Name
}
