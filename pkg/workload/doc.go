// Package workload turns a Deployment or StatefulSet into what a backup
// needs to know about it: its object, its running pods and their containers,
// and the PersistentVolumeClaims those pods mount. It also builds the
// Kubernetes client configuration the services share.
package workload
