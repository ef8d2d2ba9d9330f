package events_test

import (
	"strings"
	"testing"

	"github.com/freezeframe/freezeframe/pkg/events"
	"github.com/freezeframe/freezeframe/pkg/events/eventstest"
)

func TestSecretLookingOption(t *testing.T) {
	for name, want := range map[string]bool{
		"dbPassword": true, "DB_PASSWD": true, "slack-token": true, "apiKey": true, "api_key": true,
		"nkeySeed": true, "clientSecret": true, "credentials": true, "private.key": true,
		"database": false, "mode": false, "tables": false, "keyspace": false, "monkey": false,
	} {
		if got := events.SecretLookingOption(name); got != want {
			t.Errorf("SecretLookingOption(%q) = %v, want %v", name, got, want)
		}
	}
}

// A request carrying a credential as an option is refused before it reaches
// the stream, with where the credential belongs instead.
func TestRequestWithSecretOptionIsRefused(t *testing.T) {
	srv := eventstest.NewServer(t)
	nc, js := srv.JetStream()
	client, err := events.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	const password = "hunter2-Pa55"
	_, err = client.PublishBackupRequested(t.Context(), events.BackupRequested{BackupRef: events.BackupRef{Workload: redis},
		Options: map[string]string{"database": "shop", "dbPassword": password}})
	if err == nil {
		t.Fatal("request with options.dbPassword accepted")
	}
	for _, want := range []string{"options.dbPassword", "credential", "Kubernetes Secret", "objects"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), password) {
		t.Errorf("error repeats the value: %s", err)
	}
	evs := eventstest.Stored(t, js, events.Filter{})
	if len(evs) != 0 {
		t.Fatalf("stream holds %d events after a refused request", len(evs))
	}
	if _, err := client.PublishBackupRequested(t.Context(), events.BackupRequested{BackupRef: events.BackupRef{Workload: redis},
		Options: map[string]string{"database": "shop"}}); err != nil {
		t.Fatalf("plain options refused: %v", err)
	}
}
