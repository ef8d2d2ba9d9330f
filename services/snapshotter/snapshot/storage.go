package snapshot

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	groupv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumegroupsnapshot/v1"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Annotations by which a cluster marks its default snapshot classes, one
// per CSI driver (the external-snapshotter's convention).
const (
	annotationDefaultSnapshotClass      = "snapshot.storage.kubernetes.io/is-default-class"
	annotationDefaultGroupSnapshotClass = "groupsnapshot.storage.kubernetes.io/is-default-class"
)

// Errors of class resolution, to match with errors.Is.
var (
	// ErrNoSnapshotClass: no class named, and no default class for the
	// volume's CSI driver.
	ErrNoSnapshotClass = errors.New("no VolumeSnapshotClass")
	// ErrClaimNotReady: the claim does not exist or is not bound to a CSI
	// volume, so there is nothing to snapshot.
	ErrClaimNotReady = errors.New("persistentvolumeclaim cannot be snapshotted")
)

// storageIndex answers, from informer caches, which CSI driver serves a
// claim and which snapshot class to use for it. The answers are needed
// while the application is frozen, where an API round trip per claim would
// add to the freeze; the caches make them memory reads.
type storageIndex struct {
	kube kubernetes.Interface

	factory        informers.SharedInformerFactory
	claims         cache.SharedIndexInformer
	storageClasses cache.SharedIndexInformer
	classes        cache.SharedIndexInformer
	// groupClasses is nil when the cluster serves no VolumeGroupSnapshot API.
	groupClasses cache.SharedIndexInformer
}

func newStorageIndex(kube kubernetes.Interface, snaps SnapshotAPI, groups bool) *storageIndex {
	f := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithTransform(stripManagedFields))
	ix := &storageIndex{
		kube:           kube,
		factory:        f,
		claims:         f.Core().V1().PersistentVolumeClaims().Informer(),
		storageClasses: f.Storage().V1().StorageClasses().Informer(),
	}
	ix.classes = newInformer(snaps, &snapv1.VolumeSnapshotClass{},
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return snaps.SnapshotV1().VolumeSnapshotClasses().List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return snaps.SnapshotV1().VolumeSnapshotClasses().Watch(ctx, o)
		})
	if groups {
		ix.groupClasses = newInformer(snaps, &groupv1.VolumeGroupSnapshotClass{},
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return snaps.GroupsnapshotV1().VolumeGroupSnapshotClasses().List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return snaps.GroupsnapshotV1().VolumeGroupSnapshotClasses().Watch(ctx, o)
			})
	}
	return ix
}

// newInformer is a shared informer over one snapshot API resource, all
// namespaces, managed fields dropped.
func newInformer(snaps SnapshotAPI, obj runtime.Object, list cache.ListWithContextFunc, watchFn cache.WatchFuncWithContext) cache.SharedIndexInformer {
	lw := &cache.ListWatch{ListWithContextFunc: list, WatchFuncWithContext: watchFn}
	// Passing snaps lets a fake clientset opt out of watch-list semantics it
	// cannot serve; the real clientset uses them.
	inf := cache.NewSharedIndexInformerWithOptions(cache.ToListWatcherWithWatchListSemantics(lw, snaps), obj, cache.SharedIndexInformerOptions{Indexers: cache.Indexers{}})
	_ = inf.SetTransform(stripManagedFields) // fails only once started
	return inf
}

func (ix *storageIndex) informers() []cache.SharedIndexInformer {
	out := []cache.SharedIndexInformer{ix.classes}
	if ix.groupClasses != nil {
		out = append(out, ix.groupClasses)
	}
	return out
}

// run runs the informers until ctx ends.
func (ix *storageIndex) run(ctx context.Context) {
	ix.factory.Start(ctx.Done())
	for _, inf := range ix.informers() {
		go inf.RunWithContext(ctx)
	}
	<-ctx.Done()
	ix.factory.Shutdown()
}

// synced waits until every cache has listed once.
func (ix *storageIndex) synced(ctx context.Context) bool {
	checks := []cache.InformerSynced{ix.claims.HasSynced, ix.storageClasses.HasSynced}
	for _, inf := range ix.informers() {
		checks = append(checks, inf.HasSynced)
	}
	return cache.WaitForCacheSync(ctx.Done(), checks...)
}

// claim is a PersistentVolumeClaim as the snapshotter needs it.
type claim struct {
	Name   string
	Driver string
}

// claim finds the CSI driver of a bound claim: from its StorageClass's
// provisioner, or for a claim without a class, from its PersistentVolume
// (one API read, only for statically provisioned volumes).
func (ix *storageIndex) claim(ctx context.Context, namespace, name string) (claim, error) {
	obj, ok, err := ix.claims.GetStore().GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return claim{}, fmt.Errorf("%w: persistentvolumeclaim %s/%s not found", ErrClaimNotReady, namespace, name)
	}
	pvc := obj.(*corev1.PersistentVolumeClaim)
	if pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.VolumeName == "" {
		return claim{}, fmt.Errorf("%w: persistentvolumeclaim %s/%s is %s, not Bound", ErrClaimNotReady, namespace, name, phaseOf(pvc))
	}
	if sc := pvc.Spec.StorageClassName; sc != nil && *sc != "" {
		obj, ok, _ := ix.storageClasses.GetStore().GetByKey(*sc)
		if ok {
			return claim{Name: name, Driver: obj.(*storagev1.StorageClass).Provisioner}, nil
		}
	}
	pv, err := ix.kube.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return claim{}, fmt.Errorf("%w: persistentvolumeclaim %s/%s is bound to persistentvolume %s, which does not exist", ErrClaimNotReady, namespace, name, pvc.Spec.VolumeName)
		}
		return claim{}, classify(fmt.Errorf("get persistentvolume %s of claim %s/%s: %w", pvc.Spec.VolumeName, namespace, name, err))
	}
	if pv.Spec.CSI == nil {
		return claim{}, fmt.Errorf("%w: persistentvolumeclaim %s/%s is bound to persistentvolume %s, which is not a CSI volume", ErrClaimNotReady, namespace, name, pv.Name)
	}
	return claim{Name: name, Driver: pv.Spec.CSI.Driver}, nil
}

// claimLabel is the value of a label on a claim, as the cache has it.
func (ix *storageIndex) claimLabel(namespace, name, key string) string {
	obj, ok, err := ix.claims.GetStore().GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return ""
	}
	return obj.(*corev1.PersistentVolumeClaim).Labels[key]
}

func phaseOf(pvc *corev1.PersistentVolumeClaim) string {
	if pvc.Status.Phase == "" {
		return "Pending"
	}
	return string(pvc.Status.Phase)
}

// snapshotClass is the VolumeSnapshotClass for a claim on driver: the one
// asked for, which must serve that driver, else the driver's one default.
func (ix *storageIndex) snapshotClass(asked, driver string) (string, error) {
	var all []*snapv1.VolumeSnapshotClass
	for _, obj := range ix.classes.GetStore().List() {
		all = append(all, obj.(*snapv1.VolumeSnapshotClass))
	}
	return pickClass("VolumeSnapshotClass", annotationDefaultSnapshotClass, asked, driver, all,
		func(c *snapv1.VolumeSnapshotClass) (string, string, map[string]string) {
			return c.Name, c.Driver, c.Annotations
		})
}

// groupSnapshotClass is the VolumeGroupSnapshotClass for driver, or "" when
// the cluster has no group snapshots or none for that driver: the volumes
// are then snapshotted one by one.
func (ix *storageIndex) groupSnapshotClass(asked, driver string) (string, error) {
	if ix.groupClasses == nil {
		return "", nil
	}
	var all []*groupv1.VolumeGroupSnapshotClass
	for _, obj := range ix.groupClasses.GetStore().List() {
		all = append(all, obj.(*groupv1.VolumeGroupSnapshotClass))
	}
	name, err := pickClass("VolumeGroupSnapshotClass", annotationDefaultGroupSnapshotClass, asked, driver, all,
		func(c *groupv1.VolumeGroupSnapshotClass) (string, string, map[string]string) {
			return c.Name, c.Driver, c.Annotations
		})
	if errors.Is(err, ErrNoSnapshotClass) && asked == "" {
		return "", nil
	}
	return name, err
}

func pickClass[C any](what, defaultAnnotation, asked, driver string, all []C, fields func(C) (name, driver string, annotations map[string]string)) (string, error) {
	var defaults []string
	for _, c := range all {
		name, d, ann := fields(c)
		if asked != "" && name == asked {
			if d != driver {
				return "", fmt.Errorf("%s %s is for CSI driver %s, not %s", what, name, d, driver)
			}
			return name, nil
		}
		if d == driver && ann[defaultAnnotation] == "true" {
			defaults = append(defaults, name)
		}
	}
	switch {
	case asked != "":
		return "", fmt.Errorf("%w: %s %s not found", ErrNoSnapshotClass, what, asked)
	case len(defaults) == 0:
		return "", fmt.Errorf("%w for CSI driver %s: annotate one of its classes %s=true, or name one with the workload annotation freezeframe.io/snapshot-class", ErrNoSnapshotClass, driver, defaultAnnotation)
	case len(defaults) > 1:
		sort.Strings(defaults)
		return "", fmt.Errorf("%d default %ss for CSI driver %s (%s): keep one, or name one with freezeframe.io/snapshot-class", len(defaults), what, driver, strings.Join(defaults, ", "))
	}
	return defaults[0], nil
}
