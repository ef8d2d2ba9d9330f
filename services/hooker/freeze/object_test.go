package freeze

import (
	"testing"
	"time"

	"github.com/freezeframe/freezeframe/pkg/events"
)

// A blueprint that reads the workload through .Object gets it; the
// conversion is skipped for blueprints that do not (see Action.Mentions).
func TestTemplatesReadTheWorkloadObject(t *testing.T) {
	bp := redisBlueprint("KubeExec")
	actions := bp.Object["actions"].(map[string]any)
	pre := actions["backupPrehook"].(map[string]any)["phases"].([]any)[0].(map[string]any)
	args := pre["args"].(map[string]any)
	args["command"] = []any{"echo", "{{ .Object.kind }}/{{ .Object.metadata.name }}"}
	f := newFixture(t, Config{}, bp, map[string]string{AnnotationKanisterBlueprint: "redis-hooks"})
	_, col := f.request(t)
	evs := col.Until(10*time.Second, func(ev events.Event) bool { return ev.Kind() == events.KindQuiesced || events.IsTerminal(ev) })
	if last := evs[len(evs)-1]; last.Kind() != events.KindQuiesced {
		t.Fatalf("got %s %+v, want quiesced", last.Kind(), last.Payload)
	}
	if got := f.exec.Commands(); len(got) != 1 || got[0] != "redis-7d9f/redis: echo Deployment/redis" {
		t.Fatalf("commands %q, want the pre-hook rendered from .Object", got)
	}
}
