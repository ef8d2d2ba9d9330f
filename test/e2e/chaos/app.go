package chaos

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/freezeframe/freezeframe/test/e2e/consistency"
	"github.com/freezeframe/freezeframe/test/e2e/harness"
	"github.com/freezeframe/freezeframe/test/sandbox"
)

// BlueprintName is the chaos blueprint, bound to the Redis Deployment by
// annotation.
const BlueprintName = "chaos-hooks"

// HookSleep is how long each hook sleeps once it wrote its marker: what makes
// "mid pre-hook" (after the pause) and "mid post-hook" (before the unpause)
// last long enough to kill a service in.
const HookSleep = 500 * time.Millisecond

// blueprint is the demo's Redis blueprint (CLIENT PAUSE ... WRITE in the
// pre-hook, CLIENT UNPAUSE in the post-hook, password from the Secret) with a
// marker file written as each hook begins (<markers>/<phase>.<unix nanos>, the
// hooks run as local processes in the sandbox) and a sleep: after the pause in
// the pre-hook, before the unpause in the post-hook, so that a kill there leaves
// the application frozen.
func blueprint(ns, secret, markers string) string {
	phase := func(name, marker, body string) string {
		return fmt.Sprintf(`    - func: KubeExec
      name: %[1]s
      objects:
        redisSecret:
          kind: Secret
          name: '%[2]s'
          namespace: '{{ .Deployment.Namespace }}'
      args:
        namespace: '{{ .Deployment.Namespace }}'
        pod: '{{ index .Deployment.Pods 0 }}'
        container: redis
        command:
        - bash
        - -o
        - errexit
        - -c
        - |
          touch %[3]s/%[4]s.$(date +%%s%%N)
          export REDISCLI_AUTH='{{ index .Phases.%[1]s.Secrets.redisSecret.Data "password" | toString }}'
%[5]s`, name, secret, markers, marker, indent(body, "          "))
	}
	sleep := strconv.FormatFloat(HookSleep.Seconds(), 'f', -1, 64)
	pre := phase("pauseWrites", PreHook, `reply=$(redis-cli CLIENT PAUSE 300000 WRITE)
test "$reply" = OK || { echo "CLIENT PAUSE: $reply" >&2; exit 1; }
sleep `+sleep+"\n")
	post := phase("resumeWrites", PostHook, `sleep `+sleep+`
reply=$(redis-cli CLIENT UNPAUSE)
test "$reply" = OK || { echo "CLIENT UNPAUSE: $reply" >&2; exit 1; }
`)
	return fmt.Sprintf("apiVersion: freezeframe.io/v1alpha1\nkind: Blueprint\nmetadata: {name: %s, namespace: %s}\nactions:\n  backupPrehook:\n    phases:\n%s  backupPosthook:\n    phases:\n%s",
		BlueprintName, ns, pre, post)
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n") + "\n"
}

// deployApp starts the Redis Deployment (a real redis-server behind a kwok pod)
// bound to the chaos blueprint, whose hooks write markers into markers.
func deployApp(ctx context.Context, c *sandbox.Cluster, ns, markers string) (*sandbox.Database, error) {
	if err := harness.InstallBlueprintCRD(ctx, c); err != nil {
		return nil, err
	}
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		return nil, fmt.Errorf("deploy app: %w", err)
	}
	db, err := c.StartRedis(ctx, sandbox.DatabaseOptions{
		Namespace:   ns,
		Name:        "cache",
		Annotations: map[string]string{"freezeframe.io/blueprint": BlueprintName},
	})
	if err != nil {
		return nil, fmt.Errorf("deploy app: %w", err)
	}
	if _, err := harness.Apply(ctx, c, blueprint(ns, db.Secret, markers)); err != nil {
		return nil, fmt.Errorf("deploy app: %w", err)
	}
	return db, nil
}

func redisAddr(s *sandbox.Server) string { return s.Host + ":" + strconv.Itoa(s.Port) }

// unpause undoes a pause a killed hooker left behind, so the next row starts
// from a writable application.
func unpause(ctx context.Context, s *sandbox.Server) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := consistency.DialRedis(ctx, redisAddr(s), s.Password)
	if err != nil {
		return fmt.Errorf("unpause redis: %w", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Do("CLIENT", "UNPAUSE"); err != nil {
		return fmt.Errorf("unpause redis: %w", err)
	}
	return nil
}
