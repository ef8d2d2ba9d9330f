// Package blueprinttest holds blueprints for tests and benchmarks of the
// services that run them.
package blueprinttest

import "k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

// RedisPause is a Kanister Blueprint "redis-hooks" in namespace "kanister"
// that pauses a Redis Deployment's writes in its pre-hook (CLIENT PAUSE
// ... WRITE) and unpauses them in its post-hook, by exec into container
// "redis" of the first pod.
func RedisPause() *unstructured.Unstructured {
	phase := func(name, cmd string) map[string]any {
		return map[string]any{"func": "KubeExec", "name": name, "args": map[string]any{
			"namespace": "{{ .Deployment.Namespace }}", "pod": "{{ index .Deployment.Pods 0 }}", "container": "redis",
			"command": []any{"redis-cli", cmd},
		}}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cr.kanister.io/v1alpha1", "kind": "Blueprint",
		"metadata": map[string]any{"name": "redis-hooks", "namespace": "kanister"},
		"actions": map[string]any{
			"backupPrehook":  map[string]any{"phases": []any{phase("pause", "CLIENT PAUSE 60000 WRITE")}},
			"backupPosthook": map[string]any{"phases": []any{phase("unpause", "CLIENT UNPAUSE")}},
		},
	}}
}
