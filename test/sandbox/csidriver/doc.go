// Package csidriver is the sandbox's CSI driver: volumes are directories, and a snapshot is a
// copy of its volume's directory taken when CreateSnapshot is called.
//
// It serves the Identity, Controller and Node services on a unix socket, for csi-snapshotter
// (and csi-sanity) to connect to. The controller advertises CREATE_DELETE_VOLUME,
// CREATE_DELETE_SNAPSHOT and LIST_SNAPSHOTS; a volume can be created from a snapshot, which
// is how a backup is restored.
//
// # Slow snapshots
//
// A cloud snapshot is cut at once but uploaded for minutes. The driver models this: the copy
// is made and creation_time set at CreateSnapshot, while ready_to_use stays false until the
// ready delay has passed (Options.ReadyDelay, SetReadyDelay, or the VolumeSnapshotClass
// parameter "readyDelay", a Go duration).
//
// State lives in memory and in the directories under Options.Root; it does not survive a
// restart of the process that runs the driver.
package csidriver
