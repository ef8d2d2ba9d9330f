package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nats-io/nkeys"

	"github.com/freezeframe/freezeframe/pkg/events"
)

func cmdNATSAuth(args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("nats-auth", flag.ContinueOnError)
	fset.SetOutput(stderr)
	out := fset.String("out", "", "directory for the seed files and auth.conf (required)")
	var res events.Resources
	fset.StringVar(&res.Stream, "stream", envOr("STREAM", events.DefaultStream), "event stream ($STREAM)")
	fset.StringVar(&res.FreezesBucket, "lease-bucket", envOr("HOOKER_LEASE_BUCKET", events.FreezesBucket), "the hooker's lease bucket ($HOOKER_LEASE_BUCKET)")
	fset.StringVar(&res.LedgerBucket, "ledger-bucket", envOr("NOTIFIER_SLACK_BUCKET", events.LedgerBucket), "the notifier's ledger bucket ($NOTIFIER_SLACK_BUCKET)")
	fset.Usage = func() {
		fmt.Fprint(stderr, `Usage: freezeframe nats-auth --out DIR [flags]

Writes one nkey seed per role (DIR/<role>.nk, mode 0600: scheduler, hooker,
snapshotter, notifier, requester, operator, admin) and DIR/auth.conf, a
nats-server authorization block giving each role's public key exactly the
permissions it needs: a service publishes only the events it emits and
reads only its own consumers; a requester asks for backups and reads
events; an operator may also unlock and restore; admin runs
"freezeframe setup". Seeds already in DIR are kept, so running it again
only rewrites auth.conf. Include auth.conf in the server's configuration
and give each service its seed (NATS_NKEY). Flags:
`)
		fset.PrintDefaults()
	}
	if err := parseNoPositional(fset, args); err != nil {
		return err
	}
	if *out == "" {
		fset.Usage()
		return errors.New("nats-auth: --out is required")
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return fmt.Errorf("nats-auth: %w", err)
	}
	keys := map[events.Role]string{}
	for _, r := range events.Roles() {
		pub, created, err := roleKey(filepath.Join(*out, string(r)+".nk"))
		if err != nil {
			return fmt.Errorf("nats-auth: role %s: %w", r, err)
		}
		keys[r] = pub
		verb := "kept"
		if created {
			verb = "created"
		}
		fmt.Fprintf(stdout, "%s: %s %s (%s)\n", r, verb, filepath.Join(*out, string(r)+".nk"), pub)
	}
	conf := authConf(keys, res)
	path := filepath.Join(*out, "auth.conf")
	if err := os.WriteFile(path, conf, 0o600); err != nil {
		return fmt.Errorf("nats-auth: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s\n", path)
	return nil
}

// roleKey reads the user seed at path, or creates one there (mode 0600),
// and returns its public key.
func roleKey(path string) (pub string, created bool, err error) {
	seed, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return "", false, err
		}
		if seed, err = kp.Seed(); err != nil {
			return "", false, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return "", false, err
		}
		if _, err := f.Write(append(seed, '\n')); err != nil {
			f.Close()
			return "", false, err
		}
		if err := f.Close(); err != nil {
			return "", false, err
		}
		created = true
	} else if err != nil {
		return "", false, err
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(seed))
	if err != nil {
		return "", false, fmt.Errorf("%s: not an nkey seed: %w", path, err)
	}
	if pub, err = kp.PublicKey(); err != nil {
		return "", false, err
	}
	if !nkeys.IsValidPublicUserKey(pub) {
		return "", false, fmt.Errorf("%s: not a user seed (want one starting with SU)", path)
	}
	return pub, created, nil
}

// authConf renders a nats-server authorization block: one nkey user per
// role with events.Permissions.
func authConf(keys map[events.Role]string, res events.Resources) []byte {
	var b strings.Builder
	b.WriteString("# Written by `freezeframe nats-auth`: one nkey user per freezeframe role,\n")
	b.WriteString("# with the permissions events.Permissions derives for it. Regenerate, do not edit.\n")
	b.WriteString("authorization {\n  users = [\n")
	list := func(indent, name string, subjects []string) {
		if len(subjects) == 0 {
			return
		}
		q := make([]string, len(subjects))
		for i, s := range subjects {
			q[i] = strconv.Quote(s)
		}
		fmt.Fprintf(&b, "%s%s: [%s]\n", indent, name, strings.Join(q, ", "))
	}
	for _, r := range events.Roles() {
		g := events.Permissions(r, res)
		fmt.Fprintf(&b, "    # %s\n    {\n      nkey: %q\n      permissions: {\n", r, keys[r])
		b.WriteString("        publish: {\n")
		list("          ", "allow", g.Publish.Allow)
		list("          ", "deny", g.Publish.Deny)
		b.WriteString("        }\n        subscribe: {\n")
		list("          ", "allow", g.Subscribe.Allow)
		list("          ", "deny", g.Subscribe.Deny)
		b.WriteString("        }\n      }\n    }\n")
	}
	b.WriteString("  ]\n}\n")
	return []byte(b.String())
}
