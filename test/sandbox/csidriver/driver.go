package csidriver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// DefaultName is the driver name the sandbox registers (CSIDriver, StorageClass,
// VolumeSnapshotClass).
const DefaultName = "sandbox.csi.freezeframe.dev"

// ParamReadyDelay is the CreateSnapshot and CreateVolumeGroupSnapshot parameter (from the
// VolumeSnapshotClass or VolumeGroupSnapshotClass) that overrides the driver's ready delay
// for the snapshots of one call.
const ParamReadyDelay = "readyDelay"

// VolumeContextPath is the volume context key holding the volume's directory.
const VolumeContextPath = "path"

const defaultCapacity = 1 << 30

// Options configures a Driver.
type Options struct {
	// Name is the CSI driver name; DefaultName when empty.
	Name string
	// Root holds volumes/<id> and snapshots/<id>; it is created if missing.
	Root string
	// NodeID is reported by NodeGetInfo; "sandbox" when empty.
	NodeID string
	// ReadyDelay keeps a new snapshot's ready_to_use false for this long.
	ReadyDelay time.Duration
	// Logger receives one line per mutating call; slog.Default() when nil.
	Logger *slog.Logger
}

// Volume is a volume the driver holds.
type Volume struct {
	ID       string
	Name     string
	Capacity int64
	// Path is the directory that backs the volume.
	Path string
	// SourceSnapshotID is set when the volume was restored from a snapshot.
	SourceSnapshotID string
}

// Snapshot is a snapshot the driver holds.
type Snapshot struct {
	ID             string
	Name           string
	SourceVolumeID string
	// Path is the directory holding the copy of the volume.
	Path      string
	Size      int64
	CreatedAt time.Time
	// ReadyAt is when the snapshot reports ready_to_use.
	ReadyAt time.Time
	// GroupSnapshotID is set when the snapshot was cut as a member of a group snapshot.
	GroupSnapshotID string
}

// Driver is a CSI driver backed by directories. Its methods are safe for concurrent use.
type Driver struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	csi.UnimplementedGroupControllerServer
	csi.UnimplementedNodeServer

	name   string
	nodeID string
	root   string
	log    *slog.Logger

	mu         sync.Mutex
	readyDelay time.Duration
	volumes    map[string]*Volume        // by ID
	snapshots  map[string]*Snapshot      // by ID
	groups     map[string]*GroupSnapshot // by ID
	published  map[string]string         // volume ID -> target path
}

// New returns a driver storing its data under opts.Root.
func New(opts Options) (*Driver, error) {
	if opts.Root == "" {
		return nil, errors.New("new csi driver: Root is required")
	}
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if opts.NodeID == "" {
		opts.NodeID = "sandbox"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	for _, dir := range []string{"volumes", "snapshots"} {
		if err := os.MkdirAll(filepath.Join(opts.Root, dir), 0o755); err != nil {
			return nil, fmt.Errorf("new csi driver: %w", err)
		}
	}
	return &Driver{
		name:       opts.Name,
		nodeID:     opts.NodeID,
		root:       opts.Root,
		log:        opts.Logger.With("component", "csidriver"),
		readyDelay: opts.ReadyDelay,
		volumes:    map[string]*Volume{},
		snapshots:  map[string]*Snapshot{},
		groups:     map[string]*GroupSnapshot{},
		published:  map[string]string{},
	}, nil
}

// Name returns the CSI driver name.
func (d *Driver) Name() string { return d.name }

// SetReadyDelay changes the ready delay for snapshots created from now on.
func (d *Driver) SetReadyDelay(delay time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.readyDelay = delay
}

// Volume returns the volume with the given ID.
func (d *Driver) Volume(id string) (Volume, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.volumes[id]
	if !ok {
		return Volume{}, false
	}
	return *v, true
}

// Snapshot returns the snapshot with the given ID.
func (d *Driver) Snapshot(id string) (Snapshot, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.snapshots[id]
	if !ok {
		return Snapshot{}, false
	}
	return *s, true
}

// Serve serves the CSI services on a unix socket at path until ctx ends.
func (d *Driver) Serve(ctx context.Context, path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("serve csi: %w", err)
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("serve csi: %w", err)
	}
	return d.ServeListener(ctx, lis)
}

// ServeListener serves the CSI services on lis until ctx ends.
func (d *Driver) ServeListener(ctx context.Context, lis net.Listener) error {
	srv := grpc.NewServer()
	csi.RegisterIdentityServer(srv, d)
	csi.RegisterControllerServer(srv, d)
	csi.RegisterGroupControllerServer(srv, d)
	csi.RegisterNodeServer(srv, d)
	stop := context.AfterFunc(ctx, srv.Stop)
	defer stop()
	if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve csi: %w", err)
	}
	return nil
}

// Identity

func (d *Driver) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: d.name, VendorVersion: "0.1.0"}, nil
}

func (d *Driver) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	var caps []*csi.PluginCapability
	for _, service := range []csi.PluginCapability_Service_Type{
		csi.PluginCapability_Service_CONTROLLER_SERVICE,
		csi.PluginCapability_Service_GROUP_CONTROLLER_SERVICE,
	} {
		caps = append(caps, &csi.PluginCapability{
			Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{Type: service}},
		})
	}
	return &csi.GetPluginCapabilitiesResponse{Capabilities: caps}, nil
}

func (d *Driver) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{Ready: wrapperspb.Bool(true)}, nil
}

// Controller

func (d *Driver) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, c := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
	} {
		caps = append(caps, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: c}},
		})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

func validateCapabilities(caps []*csi.VolumeCapability) error {
	if len(caps) == 0 {
		return status.Error(codes.InvalidArgument, "volume capabilities are required")
	}
	for _, c := range caps {
		if c.GetBlock() != nil {
			return status.Error(codes.InvalidArgument, "block volumes are not supported: volumes are directories")
		}
		if c.GetMount() == nil {
			return status.Error(codes.InvalidArgument, "access type mount is required")
		}
		if c.GetAccessMode() == nil {
			return status.Error(codes.InvalidArgument, "access mode is required")
		}
	}
	return nil
}

func (d *Driver) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	if err := validateCapabilities(req.GetVolumeCapabilities()); err != nil {
		return nil, err
	}
	required, limit := req.GetCapacityRange().GetRequiredBytes(), req.GetCapacityRange().GetLimitBytes()
	if required < 0 || limit < 0 || (limit > 0 && required > limit) {
		return nil, status.Error(codes.OutOfRange, "invalid capacity range")
	}
	capacity := required
	if capacity == 0 {
		capacity = min(defaultCapacity, limit)
		if capacity == 0 {
			capacity = defaultCapacity
		}
	}
	var sourceSnapshot string
	if src := req.GetVolumeContentSource(); src != nil {
		if src.GetSnapshot() == nil {
			return nil, status.Error(codes.InvalidArgument, "only snapshots can be a volume content source")
		}
		sourceSnapshot = src.GetSnapshot().GetSnapshotId()
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	for _, v := range d.volumes {
		if v.Name != req.GetName() {
			continue
		}
		if v.Capacity < required || (limit > 0 && v.Capacity > limit) || v.SourceSnapshotID != sourceSnapshot {
			return nil, status.Errorf(codes.AlreadyExists, "volume %q exists with a different capacity or source", v.Name)
		}
		return &csi.CreateVolumeResponse{Volume: d.csiVolume(v, req.GetVolumeContentSource())}, nil
	}
	var snap *Snapshot
	if sourceSnapshot != "" {
		var ok bool
		if snap, ok = d.snapshots[sourceSnapshot]; !ok {
			return nil, status.Errorf(codes.NotFound, "source snapshot %q not found", sourceSnapshot)
		}
	}
	v := &Volume{ID: "vol-" + newID(), Name: req.GetName(), Capacity: capacity, SourceSnapshotID: sourceSnapshot}
	v.Path = filepath.Join(d.root, "volumes", v.ID)
	if snap != nil {
		if _, err := copyTree(ctx, snap.Path, v.Path); err != nil {
			_ = os.RemoveAll(v.Path)
			return nil, status.Errorf(codes.Internal, "restore snapshot %s: %v", snap.ID, err)
		}
	} else if err := os.MkdirAll(v.Path, 0o777); err != nil {
		return nil, status.Errorf(codes.Internal, "create volume directory: %v", err)
	}
	// Databases run as their own users (postgres refuses root): let them write.
	_ = os.Chmod(v.Path, 0o777)
	d.volumes[v.ID] = v
	d.log.InfoContext(ctx, "volume created", "volume_id", v.ID, "name", v.Name, "path", v.Path, "source_snapshot", sourceSnapshot)
	return &csi.CreateVolumeResponse{Volume: d.csiVolume(v, req.GetVolumeContentSource())}, nil
}

func (d *Driver) csiVolume(v *Volume, src *csi.VolumeContentSource) *csi.Volume {
	return &csi.Volume{
		VolumeId:      v.ID,
		CapacityBytes: v.Capacity,
		VolumeContext: map[string]string{VolumeContextPath: v.Path},
		ContentSource: src,
	}
}

func (d *Driver) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id is required")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.volumes[req.GetVolumeId()]
	if !ok {
		return &csi.DeleteVolumeResponse{}, nil
	}
	if err := os.RemoveAll(v.Path); err != nil {
		return nil, status.Errorf(codes.Internal, "delete volume directory: %v", err)
	}
	delete(d.volumes, v.ID)
	d.log.InfoContext(ctx, "volume deleted", "volume_id", v.ID)
	return &csi.DeleteVolumeResponse{}, nil
}

func (d *Driver) ValidateVolumeCapabilities(_ context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id is required")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume capabilities are required")
	}
	d.mu.Lock()
	_, ok := d.volumes[req.GetVolumeId()]
	d.mu.Unlock()
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume %q not found", req.GetVolumeId())
	}
	if err := validateCapabilities(req.GetVolumeCapabilities()); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
	}}, nil
}

func (d *Driver) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	if req.GetSourceVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "source volume id is required")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	delay, err := d.readyDelayFor(req.GetParameters())
	if err != nil {
		return nil, err
	}
	for _, s := range d.snapshots {
		if s.Name != req.GetName() {
			continue
		}
		if s.SourceVolumeID != req.GetSourceVolumeId() {
			return nil, status.Errorf(codes.AlreadyExists, "snapshot %q exists for volume %q", s.Name, s.SourceVolumeID)
		}
		return &csi.CreateSnapshotResponse{Snapshot: csiSnapshot(s)}, nil
	}
	v, ok := d.volumes[req.GetSourceVolumeId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "source volume %q not found", req.GetSourceVolumeId())
	}
	s, err := d.cutSnapshot(ctx, req.GetName(), v, time.Now(), delay, "")
	if err != nil {
		return nil, err
	}
	return &csi.CreateSnapshotResponse{Snapshot: csiSnapshot(s)}, nil
}

// readyDelayFor returns the ready delay for snapshots created with params: the
// ParamReadyDelay parameter if given, else the driver's. d.mu must be held.
func (d *Driver) readyDelayFor(params map[string]string) (time.Duration, error) {
	p, ok := params[ParamReadyDelay]
	if !ok {
		return d.readyDelay, nil
	}
	delay, err := time.ParseDuration(p)
	if err != nil {
		return 0, status.Errorf(codes.InvalidArgument, "parameter %s: %v", ParamReadyDelay, err)
	}
	return delay, nil
}

// cutSnapshot copies volume v into a new snapshot named name, created at createdAt and
// ready delay later, and records it. d.mu must be held: no other driver call can change a
// volume while it is copied.
func (d *Driver) cutSnapshot(ctx context.Context, name string, v *Volume, createdAt time.Time, delay time.Duration, groupID string) (*Snapshot, error) {
	s := &Snapshot{ID: "snap-" + newID(), Name: name, SourceVolumeID: v.ID, CreatedAt: createdAt, GroupSnapshotID: groupID}
	s.Path = filepath.Join(d.root, "snapshots", s.ID)
	size, err := copyTree(ctx, v.Path, s.Path)
	if err != nil {
		_ = os.RemoveAll(s.Path)
		return nil, status.Errorf(codes.Internal, "copy volume %s: %v", v.ID, err)
	}
	s.Size = max(size, 1)
	s.ReadyAt = s.CreatedAt.Add(delay)
	d.snapshots[s.ID] = s
	d.log.InfoContext(ctx, "snapshot created", "snapshot_id", s.ID, "name", s.Name, "volume_id", v.ID,
		"group_snapshot_id", groupID, "bytes", size, "ready_delay", delay.String(), "path", s.Path)
	return s, nil
}

func csiSnapshot(s *Snapshot) *csi.Snapshot {
	return &csi.Snapshot{
		SnapshotId:      s.ID,
		SourceVolumeId:  s.SourceVolumeID,
		SizeBytes:       s.Size,
		CreationTime:    timestamppb.New(s.CreatedAt),
		ReadyToUse:      !time.Now().Before(s.ReadyAt),
		GroupSnapshotId: s.GroupSnapshotID,
	}
}

func (d *Driver) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	if req.GetSnapshotId() == "" {
		return nil, status.Error(codes.InvalidArgument, "snapshot id is required")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.snapshots[req.GetSnapshotId()]
	if !ok {
		return &csi.DeleteSnapshotResponse{}, nil
	}
	if err := os.RemoveAll(s.Path); err != nil {
		return nil, status.Errorf(codes.Internal, "delete snapshot directory: %v", err)
	}
	delete(d.snapshots, s.ID)
	// A member may be deleted on its own: the group keeps the others.
	if g, ok := d.groups[s.GroupSnapshotID]; ok {
		g.SnapshotIDs = slices.DeleteFunc(g.SnapshotIDs, func(id string) bool { return id == s.ID })
	}
	d.log.InfoContext(ctx, "snapshot deleted", "snapshot_id", s.ID)
	return &csi.DeleteSnapshotResponse{}, nil
}

func (d *Driver) ListSnapshots(_ context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	if req.GetMaxEntries() < 0 {
		return nil, status.Error(codes.InvalidArgument, "max_entries must not be negative")
	}
	start := 0
	if tok := req.GetStartingToken(); tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil || n < 0 {
			return nil, status.Errorf(codes.Aborted, "invalid starting token %q", tok)
		}
		start = n
	}
	d.mu.Lock()
	var all []*Snapshot
	for _, s := range d.snapshots {
		if req.GetSnapshotId() != "" && s.ID != req.GetSnapshotId() {
			continue
		}
		if req.GetSourceVolumeId() != "" && s.SourceVolumeID != req.GetSourceVolumeId() {
			continue
		}
		all = append(all, s)
	}
	// Stable order, so that a token (an offset) means the same on the next call.
	sort.Slice(all, func(i, j int) bool {
		if !all[i].CreatedAt.Equal(all[j].CreatedAt) {
			return all[i].CreatedAt.Before(all[j].CreatedAt)
		}
		return all[i].ID < all[j].ID
	})
	resp := &csi.ListSnapshotsResponse{}
	if start > len(all) {
		d.mu.Unlock()
		return nil, status.Errorf(codes.Aborted, "starting token %d beyond %d snapshots", start, len(all))
	}
	end := len(all)
	if m := int(req.GetMaxEntries()); m > 0 && start+m < end {
		end = start + m
		resp.NextToken = strconv.Itoa(end)
	}
	for _, s := range all[start:end] {
		resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: csiSnapshot(s)})
	}
	d.mu.Unlock()
	return resp, nil
}

// Node: publishing links the target path to the volume's directory. kwok never calls it;
// it exists for csi-sanity and for completeness.

func (d *Driver) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	return &csi.NodeGetCapabilitiesResponse{}, nil
}

func (d *Driver) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: d.nodeID}, nil
}

func (d *Driver) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id is required")
	}
	if req.GetTargetPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "target path is required")
	}
	if req.GetVolumeCapability() == nil {
		return nil, status.Error(codes.InvalidArgument, "volume capability is required")
	}
	if err := validateCapabilities([]*csi.VolumeCapability{req.GetVolumeCapability()}); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.volumes[req.GetVolumeId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume %q not found", req.GetVolumeId())
	}
	if cur, ok := d.published[v.ID]; ok {
		if cur == req.GetTargetPath() {
			return &csi.NodePublishVolumeResponse{}, nil
		}
		switch req.GetVolumeCapability().GetAccessMode().GetMode() {
		case csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER:
			return nil, status.Errorf(codes.FailedPrecondition, "volume %q is published at %s", v.ID, cur)
		}
	}
	// A kubelet creates the target as an empty directory; replace it with the link.
	if err := os.Remove(req.GetTargetPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, status.Errorf(codes.Internal, "prepare target path: %v", err)
	}
	if err := os.Symlink(v.Path, req.GetTargetPath()); err != nil {
		return nil, status.Errorf(codes.Internal, "publish volume: %v", err)
	}
	d.published[v.ID] = req.GetTargetPath()
	d.log.InfoContext(ctx, "volume published", "volume_id", v.ID, "target", req.GetTargetPath())
	return &csi.NodePublishVolumeResponse{}, nil
}

func (d *Driver) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id is required")
	}
	if req.GetTargetPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "target path is required")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := os.Remove(req.GetTargetPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, status.Errorf(codes.Internal, "unpublish volume: %v", err)
	}
	if d.published[req.GetVolumeId()] == req.GetTargetPath() {
		delete(d.published, req.GetVolumeId())
	}
	d.log.InfoContext(ctx, "volume unpublished", "volume_id", req.GetVolumeId(), "target", req.GetTargetPath())
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}
