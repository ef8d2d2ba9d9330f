// Package sandbox runs a real Kubernetes control plane on loopback for tests and demos:
// etcd, kube-apiserver, kube-controller-manager and kube-scheduler built from the upstream
// modules, kwok as the kubelet of one fake node, snapshot-controller and csi-snapshotter
// from external-snapshotter, csi-provisioner, and a CSI driver (package csidriver) whose
// volumes are directories. kubectl and client-go cannot tell it from a real cluster, except that pods
// run no containers: kwok runs `kubectl exec` commands as local processes.
//
// # Building
//
// build.sh builds the binaries once into a cache outside the repo keyed by version
// (${FREEZEFRAME_CACHE:-~/.cache/freezeframe}/sandbox/bin-<key>/; ~10-15 minutes cold on
// two cores) and installs the Debian packages it runs (kubectl, redis, mariadb,
// postgresql). EnsureBinaries runs it; Start calls EnsureBinaries when Options.BinDir is
// empty.
//
// # Starting
//
// Start brings everything up on free ports in a state directory and returns a Cluster
// with a kubeconfig and clients; Stop kills every process group it started. Tests share
// one cluster per package:
//
//	func TestMain(m *testing.M) { sandbox.Main(m, sandbox.Options{}) }
//
//	func TestX(t *testing.T) { c := sandbox.Shared(t); ... }
//
// # Databases
//
// A pod annotated DatabaseAnnotation gets a real server from the Debian packages (Redis,
// MariaDB, PostgreSQL) on a random loopback port with its data inside the pod's PVC
// directory, and a kwok Exec rule that gives `kubectl exec` into the pod the server's
// environment, so `redis-cli`, `mariadb` and `psql` reach it without flags. StartRedis,
// StartMariaDB and StartPostgres create such a Deployment with its PVC and Secret. A
// VolumeSnapshot of the PVC copies the directory; RunServer on that copy checks it.
// StartServer starts a server without a cluster, for a test that needs a real database
// and nothing else.
//
// # Group snapshots
//
// VolumeGroupSnapshots (groupsnapshot.storage.k8s.io/v1) work end to end: the default
// VolumeGroupSnapshotClass GroupSnapshotClassName cuts all selected PVCs at one instant, and
// GroupSnapshotMembers finds the VolumeSnapshots snapshot-controller makes for the members.
// README.md records how members are named and linked, and how their status settles.
//
// Command sandbox (cmd/sandbox) offers the same to a person: `sandbox up`, `sandbox down`.
package sandbox
