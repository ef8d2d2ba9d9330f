package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/kelseyhightower/envconfig"

	"github.com/freezeframe/freezeframe/pkg/service"
)

// docs/configuration.md documents every configuration key; this keeps it
// true when a key is added or renamed.
func TestREADMEListsEveryConfigurationKey(t *testing.T) {
	readme, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	var cfgs upConfigs
	n := 0
	err = cfgs.each(func(name, prefix string, cfg any, _ *service.Common) error {
		var keys bytes.Buffer
		if err := envconfig.Usagef(prefix, cfg, &keys, "{{range .}}{{usage_key .}}\n{{end}}"); err != nil {
			return err
		}
		for _, key := range strings.Fields(keys.String()) {
			n++
			if !bytes.Contains(readme, []byte("`"+key+"`")) {
				t.Errorf("docs/configuration.md does not document %s (%s)", key, name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 40 {
		t.Fatalf("only %d keys found; the configurations were not read", n)
	}
}
