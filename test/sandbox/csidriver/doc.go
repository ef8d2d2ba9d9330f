// Package csidriver is the sandbox's CSI driver: volumes are directories, and a snapshot is a
// copy of its volume's directory taken when CreateSnapshot is called.
//
// It serves the Identity, Controller, GroupController and Node services on a unix socket,
// for csi-snapshotter (and csi-sanity) to connect to. The controller advertises
// CREATE_DELETE_VOLUME, CREATE_DELETE_SNAPSHOT and LIST_SNAPSHOTS; a volume can be created
// from a snapshot, which is how a backup is restored.
//
// # Group snapshots
//
// The group controller advertises CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT.
// CreateVolumeGroupSnapshot copies all its volumes under the driver's lock and gives every
// member the same creation_time; each member is an ordinary snapshot carrying the group's
// ID in group_snapshot_id, so ListSnapshots, DeleteSnapshot and restoring from it behave as
// for any snapshot. A group is ready once all its members are.
//
// # Slow snapshots
//
// A cloud snapshot is cut at once but uploaded for minutes. The driver models this: the copy
// is made and creation_time set at CreateSnapshot, while ready_to_use stays false until the
// ready delay has passed (Options.ReadyDelay, SetReadyDelay, or the parameter "readyDelay",
// a Go duration, of the VolumeSnapshotClass or VolumeGroupSnapshotClass).
//
// State lives in memory and in the directories under Options.Root; it does not survive a
// restart of the process that runs the driver.
package csidriver
