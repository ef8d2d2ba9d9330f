// Package workload turns a Deployment or StatefulSet into what a backup
// needs to know about it: its object, its running pods and their containers,
// and the PersistentVolumeClaims those pods mount. It reads the annotations
// a workload carries for freezeframe (the blueprint it is bound to, its
// snapshot class and how many backups to keep), says which workloads a
// BackupPolicy selects (PolicySelection, shared by the scheduler and the
// hooker), and builds the Kubernetes client configuration the services
// share.
package workload
