package demo

import "strings"

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
spec:
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

// blueprintYAML is the demo's Blueprint. redis-cli exits 0 on an error reply (NOAUTH, a
// wrong password), so each hook checks the reply itself: a hook that did not pause must
// fail, or the backup would claim a consistency it does not have.
const blueprintYAML = `apiVersion: freezeframe.io/v1alpha1
kind: Blueprint
metadata: {name: redis-hooks, namespace: __NS__}
actions:
  backupPrehook:
    phases:
    - func: KubeExec
      name: pauseWrites
      objects:
        redisSecret:
          kind: Secret
          name: '{{ .Deployment.Name }}'
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
          export REDISCLI_AUTH='{{ index .Phases.pauseWrites.Secrets.redisSecret.Data "redis-password" | toString }}'
          reply=$(redis-cli CLIENT PAUSE 300000 WRITE)
          test "$reply" = OK || { echo "CLIENT PAUSE: $reply" >&2; exit 1; }
  backupPosthook:
    phases:
    - func: KubeExec
      name: resumeWrites
      objects:
        redisSecret:
          kind: Secret
          name: '{{ .Deployment.Name }}'
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
          export REDISCLI_AUTH='{{ index .Phases.resumeWrites.Secrets.redisSecret.Data "redis-password" | toString }}'
          reply=$(redis-cli CLIENT UNPAUSE)
          test "$reply" = OK || { echo "CLIENT UNPAUSE: $reply" >&2; exit 1; }
`

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
	return strings.ReplaceAll(blueprintYAML, "__NS__", ns)
}
