package csidriver

import (
	"context"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// GroupSnapshot is a group snapshot the driver holds: one snapshot per source volume, all
// cut at the same instant.
type GroupSnapshot struct {
	ID   string
	Name string
	// SourceVolumeIDs, sorted, and Parameters are what the group was created from; a repeated
	// CreateVolumeGroupSnapshot with the same name must ask for the same.
	SourceVolumeIDs []string
	Parameters      map[string]string
	// SnapshotIDs are the members, in the order of the request's source volumes. A member
	// deleted with DeleteSnapshot leaves the list.
	SnapshotIDs []string
	CreatedAt   time.Time
}

// GroupSnapshot returns the group snapshot with the given ID.
func (d *Driver) GroupSnapshot(id string) (GroupSnapshot, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	g, ok := d.groups[id]
	if !ok {
		return GroupSnapshot{}, false
	}
	c := *g
	c.SourceVolumeIDs = slices.Clone(g.SourceVolumeIDs)
	c.Parameters = maps.Clone(g.Parameters)
	c.SnapshotIDs = slices.Clone(g.SnapshotIDs)
	return c, true
}

func (d *Driver) GroupControllerGetCapabilities(context.Context, *csi.GroupControllerGetCapabilitiesRequest) (*csi.GroupControllerGetCapabilitiesResponse, error) {
	return &csi.GroupControllerGetCapabilitiesResponse{Capabilities: []*csi.GroupControllerServiceCapability{{
		Type: &csi.GroupControllerServiceCapability_Rpc{Rpc: &csi.GroupControllerServiceCapability_RPC{
			Type: csi.GroupControllerServiceCapability_RPC_CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT,
		}},
	}}}, nil
}

// CreateVolumeGroupSnapshot copies every source volume while holding the driver's lock, so
// no other call changes a volume between the first copy and the last, and gives all members
// one creation time: the instant the group was cut. Each member is an ordinary snapshot
// (ListSnapshots, DeleteSnapshot and CreateVolume from it work) whose group_snapshot_id
// names the group.
func (d *Driver) CreateVolumeGroupSnapshot(ctx context.Context, req *csi.CreateVolumeGroupSnapshotRequest) (*csi.CreateVolumeGroupSnapshotResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	if len(req.GetSourceVolumeIds()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "source volume ids are required")
	}
	sources := slices.Sorted(slices.Values(req.GetSourceVolumeIds()))
	if slices.Contains(sources, "") {
		return nil, status.Error(codes.InvalidArgument, "source volume ids must not be empty")
	}
	if len(slices.Compact(slices.Clone(sources))) != len(sources) {
		return nil, status.Error(codes.InvalidArgument, "source volume ids must be distinct")
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	delay, err := d.readyDelayFor(req.GetParameters())
	if err != nil {
		return nil, err
	}
	for _, g := range d.groups {
		if g.Name != req.GetName() {
			continue
		}
		if !slices.Equal(g.SourceVolumeIDs, sources) || !maps.Equal(g.Parameters, req.GetParameters()) {
			return nil, status.Errorf(codes.AlreadyExists, "group snapshot %q exists for other volumes or parameters", g.Name)
		}
		return &csi.CreateVolumeGroupSnapshotResponse{GroupSnapshot: d.csiGroupSnapshot(g)}, nil
	}
	volumes := make([]*Volume, 0, len(req.GetSourceVolumeIds()))
	for _, id := range req.GetSourceVolumeIds() {
		v, ok := d.volumes[id]
		if !ok {
			return nil, status.Errorf(codes.NotFound, "source volume %q not found", id)
		}
		volumes = append(volumes, v)
	}

	g := &GroupSnapshot{
		ID:              "group-" + newID(),
		Name:            req.GetName(),
		SourceVolumeIDs: sources,
		Parameters:      maps.Clone(req.GetParameters()),
		CreatedAt:       time.Now(),
	}
	for _, v := range volumes {
		// The name only has to be unique and stable: CreateSnapshot never sees it.
		s, err := d.cutSnapshot(ctx, g.Name+"/"+v.ID, v, g.CreatedAt, delay, g.ID)
		if err != nil {
			// No group ID reaches the caller, so nothing could clean these up later.
			d.removeSnapshots(g.SnapshotIDs)
			return nil, err
		}
		g.SnapshotIDs = append(g.SnapshotIDs, s.ID)
	}
	d.groups[g.ID] = g
	d.log.InfoContext(ctx, "group snapshot created", "group_snapshot_id", g.ID, "name", g.Name,
		"snapshot_ids", g.SnapshotIDs, "ready_delay", delay.String())
	return &csi.CreateVolumeGroupSnapshotResponse{GroupSnapshot: d.csiGroupSnapshot(g)}, nil
}

// removeSnapshots forgets the given snapshots and removes their copies, as far as it can:
// it only runs on a failure that is already being reported. d.mu must be held.
func (d *Driver) removeSnapshots(ids []string) {
	for _, id := range ids {
		if s, ok := d.snapshots[id]; ok {
			_ = os.RemoveAll(s.Path)
			delete(d.snapshots, id)
		}
	}
}

// csiGroupSnapshot reports g with its current members; it is ready once all of them are.
// d.mu must be held.
func (d *Driver) csiGroupSnapshot(g *GroupSnapshot) *csi.VolumeGroupSnapshot {
	out := &csi.VolumeGroupSnapshot{
		GroupSnapshotId: g.ID,
		CreationTime:    timestamppb.New(g.CreatedAt),
		ReadyToUse:      true,
	}
	for _, id := range g.SnapshotIDs {
		s := csiSnapshot(d.snapshots[id])
		out.ReadyToUse = out.ReadyToUse && s.GetReadyToUse()
		out.Snapshots = append(out.Snapshots, s)
	}
	return out
}

// checkSnapshotIDs reports a mismatch between the snapshot IDs a caller names and the
// group's members. IDs of members deleted since are accepted: the caller may remember the
// group as it was created. An empty list is not checked (csi-sanity sends none).
func (d *Driver) checkSnapshotIDs(g *GroupSnapshot, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	for _, id := range ids {
		if s, ok := d.snapshots[id]; ok && s.GroupSnapshotID != g.ID {
			return status.Errorf(codes.InvalidArgument, "snapshot %q is not a member of group snapshot %q", id, g.ID)
		}
	}
	for _, id := range g.SnapshotIDs {
		if !slices.Contains(ids, id) {
			return status.Errorf(codes.InvalidArgument, "snapshot ids miss member %q of group snapshot %q", id, g.ID)
		}
	}
	return nil
}

func (d *Driver) DeleteVolumeGroupSnapshot(ctx context.Context, req *csi.DeleteVolumeGroupSnapshotRequest) (*csi.DeleteVolumeGroupSnapshotResponse, error) {
	if req.GetGroupSnapshotId() == "" {
		return nil, status.Error(codes.InvalidArgument, "group snapshot id is required")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	g, ok := d.groups[req.GetGroupSnapshotId()]
	if !ok {
		return &csi.DeleteVolumeGroupSnapshotResponse{}, nil
	}
	if err := d.checkSnapshotIDs(g, req.GetSnapshotIds()); err != nil {
		return nil, err
	}
	for len(g.SnapshotIDs) > 0 {
		s := d.snapshots[g.SnapshotIDs[0]]
		if err := os.RemoveAll(s.Path); err != nil {
			return nil, status.Errorf(codes.Internal, "delete snapshot directory: %v", err)
		}
		delete(d.snapshots, s.ID)
		g.SnapshotIDs = g.SnapshotIDs[1:]
	}
	delete(d.groups, g.ID)
	d.log.InfoContext(ctx, "group snapshot deleted", "group_snapshot_id", g.ID)
	return &csi.DeleteVolumeGroupSnapshotResponse{}, nil
}

func (d *Driver) GetVolumeGroupSnapshot(_ context.Context, req *csi.GetVolumeGroupSnapshotRequest) (*csi.GetVolumeGroupSnapshotResponse, error) {
	if req.GetGroupSnapshotId() == "" {
		return nil, status.Error(codes.InvalidArgument, "group snapshot id is required")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	g, ok := d.groups[req.GetGroupSnapshotId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "group snapshot %q not found", req.GetGroupSnapshotId())
	}
	if err := d.checkSnapshotIDs(g, req.GetSnapshotIds()); err != nil {
		return nil, err
	}
	return &csi.GetVolumeGroupSnapshotResponse{GroupSnapshot: d.csiGroupSnapshot(g)}, nil
}
