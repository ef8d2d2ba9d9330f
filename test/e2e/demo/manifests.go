package demo

import (
	"fmt"
	"strings"
)

// The demo application: a Redis Deployment with a PVC and a Secret holding its password,
// bound by annotation to a Blueprint written the way users write the MongoDB one from the
// blog posts (the password comes from the Secret through `objects`, the hook is a bash
// script). The pod template's sandbox.freezeframe.dev annotations make the sandbox run a
// real redis-server for the pod, with its data in the PVC's directory; on a real cluster
// the redis:7 image would, and they are ignored.
const appManifests = `apiVersion: v1
kind: Namespace
metadata: {name: __NS__}
---
apiVersion: v1
kind: Secret
metadata: {name: redis, namespace: __NS__}
stringData: {redis-password: __PASSWORD__}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: redis-data, namespace: __NS__}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: redis
  namespace: __NS__
  annotations:
    freezeframe.io/blueprint: redis-hooks
` + redisDeploymentSpec

// RedisBlueprint describes a Blueprint that pauses a Redis server's writes
// (CLIENT PAUSE ... WRITE, server-wide, outliving the exec) in the pre-hook
// and resumes them in the post-hook, with the password from the workload's
// Secret through `objects`, as users write it after the MongoDB example.
type RedisBlueprint struct {
	Namespace, Name string
	// Secret is the (templated) name of the Secret, Key the password's key.
	Secret, Key string
	// ExtraPrehook is YAML of more pre-hook phases, run after the pause.
	ExtraPrehook string
}

// YAML renders the Blueprint. redis-cli exits 0 on an error reply (NOAUTH, a
// wrong password), so each hook checks the reply itself: a hook that did not
// pause must fail, or the backup would claim a consistency it does not have.
func (r RedisBlueprint) YAML() string {
	phase := func(name, command string) string {
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
          export REDISCLI_AUTH='{{ index .Phases.%[1]s.Secrets.redisSecret.Data "%[3]s" | toString }}'
          reply=$(redis-cli %[4]s)
          test "$reply" = OK || { echo "%[4]s: $reply" >&2; exit 1; }
`, name, r.Secret, r.Key, command)
	}
	return fmt.Sprintf("apiVersion: freezeframe.io/v1alpha1\nkind: Blueprint\nmetadata: {name: %s, namespace: %s}\nactions:\n  backupPrehook:\n    phases:\n%s%s  backupPosthook:\n    phases:\n%s",
		r.Name, r.Namespace, phase("pauseWrites", "CLIENT PAUSE 300000 WRITE"), r.ExtraPrehook, phase("resumeWrites", "CLIENT UNPAUSE"))
}

// Names in the demo application.
const (
	Workload  = "redis"
	Claim     = "redis-data"
	Secret    = "redis"
	SecretKey = "redis-password"
	Blueprint = "redis-hooks"
	Container = "redis"
)

// AppManifests returns the demo application (Namespace, Secret, PVC, Deployment) for
// namespace ns with the given Redis password.
func AppManifests(ns, password string) string {
	return strings.NewReplacer("__NS__", ns, "__PASSWORD__", password).Replace(appManifests)
}

// BlueprintManifest returns the demo's Blueprint in namespace ns.
func BlueprintManifest(ns string) string {
	return RedisBlueprint{Namespace: ns, Name: "redis-hooks", Secret: "{{ .Deployment.Name }}", Key: "redis-password"}.YAML()
}

// redisDeploymentSpec is the demo Deployment's spec, the same in the
// demo's namespace and where a backup is restored to. The pod template's
// sandbox.freezeframe.dev annotations make the sandbox run a real
// redis-server for the pod, with its data in the claim's directory.
const redisDeploymentSpec = `spec:
  replicas: 1
  selector: {matchLabels: {app: redis}}
  template:
    metadata:
      labels: {app: redis}
      annotations:
        sandbox.freezeframe.dev/database: redis
        sandbox.freezeframe.dev/password-secret: redis/redis-password
        sandbox.freezeframe.dev/volume: data
    spec:
      containers:
      - name: redis
        image: redis:7
        args: [--appendonly, "yes", --appendfsync, always, --requirepass, $(REDIS_PASSWORD)]
        env:
        - name: REDIS_PASSWORD
          valueFrom: {secretKeyRef: {name: redis, key: redis-password}}
        volumeMounts: [{name: data, mountPath: /data}]
      volumes:
      - name: data
        persistentVolumeClaim: {claimName: redis-data}
`

// restoredApp is the demo application again, in the namespace a backup was restored
// into: its Secret and its Deployment, on the claim the restore made (same name, as a
// restore into another namespace keeps it), without the Blueprint binding.
const restoredApp = `apiVersion: v1
kind: Secret
metadata: {name: redis, namespace: __NS__}
stringData: {redis-password: __PASSWORD__}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: redis, namespace: __NS__}
` + redisDeploymentSpec

// RestoredAppManifests returns the demo application's Secret and Deployment for
// namespace ns, on the claim redis-data that `freezeframe restore --to-namespace ns`
// made.
func RestoredAppManifests(ns, password string) string {
	return strings.NewReplacer("__NS__", ns, "__PASSWORD__", password).Replace(restoredApp)
}
