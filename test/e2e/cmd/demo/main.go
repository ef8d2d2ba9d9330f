// Command demo is `make demo`: the whole freezeframe story on a local sandbox, ending
// with a consistency verdict (package demo). It exits 1 when the snapshot is not
// consistent or anything fails.
//
//	demo [-keep] [-namespace demo]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/freezeframe/freezeframe/test/e2e/demo"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	keep := flag.Bool("keep", false, "leave the sandbox, freezeframe and the application running until Ctrl-C")
	ns := flag.String("namespace", "demo", "namespace of the demo application")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := demo.Run(ctx, demo.Config{Out: os.Stdout, Namespace: *ns, Keep: *keep})
	if err != nil {
		return err
	}
	if !res.Verdict.Consistent {
		return fmt.Errorf("backup %s: snapshot not consistent", res.BackupID)
	}
	return nil
}
