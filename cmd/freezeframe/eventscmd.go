package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
)

func cmdEvents(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf connectFlags
	addConnectFlags(fs, &cf, events.RoleRequester)
	var f events.Filter
	fs.StringVar(&f.Namespace, "n", "", "only this namespace")
	workloadRef := fs.String("workload", "", "only this workload, as KIND/NAME")
	fs.StringVar(&f.BackupID, "backup", "", "only this backup id")
	kinds := fs.String("kind", "", "only these event kinds, comma-separated: "+kindList())
	follow := fs.Bool("follow", false, "keep printing new events until interrupted")
	since := fs.Duration("since", 0, "only events newer than this (e.g. 1h); default all stored")
	output := fs.String("o", "table", "output: table, or json (one CloudEvent per line, structured mode)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: freezeframe events [flags]\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := parseNoPositional(fs, args); err != nil {
		return err
	}
	if err := checkOutput(*output); err != nil {
		return err
	}
	f.Cluster = cf.cluster
	if *workloadRef != "" {
		kind, name, err := events.ParseWorkloadRef(*workloadRef)
		if err != nil {
			return err
		}
		f.WorkloadKind, f.Name = kind, name
	}
	if *kinds != "" {
		for _, k := range strings.Split(*kinds, ",") {
			kind, err := events.ParseKind(strings.TrimSpace(k))
			if err != nil {
				return err
			}
			f.Kinds = append(f.Kinds, kind)
		}
	}
	opts := events.SubscribeOptions{FromStart: *since == 0}
	if *since > 0 {
		opts.Since = time.Now().Add(-*since)
	}
	client, closeConn, err := cf.client(ctx)
	if err != nil {
		return err
	}
	defer closeConn()
	p := newPrinter(stdout, *output)
	if !*follow {
		evs, err := client.List(ctx, f, opts)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			p.print(ev)
		}
		return p.flush()
	}
	for ev, err := range client.Subscribe(ctx, f, opts) {
		if err != nil {
			if ctx.Err() != nil {
				return p.flush()
			}
			fmt.Fprintf(stderr, "freezeframe: %v\n", err)
			continue
		}
		p.print(ev)
		if err := p.flush(); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return p.flush()
}

func kindList() string {
	var s []string
	for _, k := range events.Kinds() {
		s = append(s, string(k))
	}
	return strings.Join(s, ",")
}

type printer struct {
	out    io.Writer
	tw     *tabwriter.Writer
	json   bool
	header bool
}

func newPrinter(out io.Writer, format string) *printer {
	return &printer{out: out, tw: tabwriter.NewWriter(out, 0, 4, 2, ' ', 0), json: format == "json"}
}

func (p *printer) print(ev events.Event) {
	if p.json {
		b, err := json.Marshal(ev.CloudEvent)
		if err == nil {
			fmt.Fprintf(p.out, "%s\n", b)
		}
		return
	}
	if !p.header {
		fmt.Fprintln(p.tw, "TIME\tBACKUP\tEVENT\tWORKLOAD\tDETAIL")
		p.header = true
	}
	w := ev.Workload()
	fmt.Fprintf(p.tw, "%s\t%s\t%s\t%s/%s/%s\t%s\n", ev.Time().Local().Format("2006-01-02 15:04:05.000"), ev.BackupID(), ev.Kind(), w.Namespace, strings.ToLower(w.Kind), w.Name, describe(ev))
}

func (p *printer) flush() error { return p.tw.Flush() }
