package sandbox

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Pod annotations that make the sandbox run a real database server behind a pod, so that
// plain manifests (kubectl apply) get one too:
//
//	sandbox.freezeframe.dev/database: redis            # or mariadb, postgres
//	sandbox.freezeframe.dev/password-secret: cache/password   # <secret>/<key>, same namespace
//	sandbox.freezeframe.dev/volume: data               # optional: the pod volume (a PVC)
//	sandbox.freezeframe.dev/container: redis           # optional: the container to exec into
//
// When such a pod is scheduled, the sandbox starts the server with its data in the PVC's
// directory (one server per PVC: a replacement pod reuses it, unless the claim is now on
// another volume) and gives the pod a kwok
// Exec rule with the server's environment.
const (
	DatabaseAnnotation       = "sandbox.freezeframe.dev/database"
	PasswordSecretAnnotation = "sandbox.freezeframe.dev/password-secret"
	VolumeAnnotation         = "sandbox.freezeframe.dev/volume"
	ContainerAnnotation      = "sandbox.freezeframe.dev/container"
)

// podServer is the server behind the pods that use one PVC.
type podServer struct {
	server *Server
	volume *Volume
}

// serveDatabasePod starts the server a pod's annotations ask for and its exec rule.
func (c *Cluster) serveDatabasePod(ctx context.Context, pod *corev1.Pod) error {
	kind := pod.Annotations[DatabaseAnnotation]
	if kind == "" || pod.Spec.NodeName == "" || pod.DeletionTimestamp != nil {
		return nil
	}
	claim, err := podClaim(pod)
	if err != nil {
		return err
	}
	key := pod.Namespace + "/" + claim
	c.mu.Lock()
	ps, ok := c.podServers[key]
	c.mu.Unlock()
	if ok {
		// The claim was made again on another volume (an in-place restore deletes it and
		// makes it from a snapshot while no pod uses it): the server on the old volume
		// goes, and one starts on the new.
		if vol, err := c.ClaimVolume(ctx, pod.Namespace, claim); err == nil && vol.PV != ps.volume.PV {
			c.logf("%s for pod %s/%s: claim %s now on volume %s, was %s: server restarted on it", kind, pod.Namespace, pod.Name, claim, vol.PV, ps.volume.PV)
			ps.server.Stop()
			c.mu.Lock()
			delete(c.podServers, key)
			c.mu.Unlock()
			ok = false
		}
	}
	if !ok {
		// Only the pod worker gets here, one pod at a time: no second server per claim.
		if ps, err = c.startPodServer(ctx, pod, kind, claim); err != nil {
			c.mu.Lock()
			c.podServerErrs[key] = err
			c.mu.Unlock()
			return err
		}
		c.mu.Lock()
		c.podServers[key] = ps
		delete(c.podServerErrs, key)
		c.mu.Unlock()
		c.logf("%s for pod %s/%s: server on 127.0.0.1:%d, data in %s", kind, pod.Namespace, pod.Name, ps.server.Port, ps.server.DataDir)
	}
	container := pod.Annotations[ContainerAnnotation]
	if container == "" {
		container = pod.Spec.Containers[0].Name
	}
	return c.SetExec(ctx, pod.Namespace, pod.Name, container, ps.volume.Path, ps.server.Env)
}

func (c *Cluster) startPodServer(ctx context.Context, pod *corev1.Pod, kind, claim string) (*podServer, error) {
	switch kind {
	case Redis, MariaDB, Postgres:
	default:
		return nil, fmt.Errorf("pod %s/%s: %s %q: want %s, %s or %s", pod.Namespace, pod.Name, DatabaseAnnotation, kind, Redis, MariaDB, Postgres)
	}
	password, err := c.podPassword(ctx, pod)
	if err != nil {
		return nil, err
	}
	vol, err := c.ClaimVolume(ctx, pod.Namespace, claim)
	if err != nil {
		return nil, err
	}
	srv, err := c.RunServer(ctx, kind, filepath.Join(vol.Path, kind), password)
	if err != nil {
		return nil, err
	}
	return &podServer{server: srv, volume: vol}, nil
}

// podClaim returns the PVC of the pod's annotated volume, or of its first PVC volume.
func podClaim(pod *corev1.Pod) (string, error) {
	want := pod.Annotations[VolumeAnnotation]
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim != nil && (want == "" || v.Name == want) {
			return v.PersistentVolumeClaim.ClaimName, nil
		}
	}
	if want != "" {
		return "", fmt.Errorf("pod %s/%s: no PVC volume %q", pod.Namespace, pod.Name, want)
	}
	return "", fmt.Errorf("pod %s/%s: no PVC volume for the database's data", pod.Namespace, pod.Name)
}

func (c *Cluster) podPassword(ctx context.Context, pod *corev1.Pod) (string, error) {
	ref := pod.Annotations[PasswordSecretAnnotation]
	if ref == "" {
		return "", fmt.Errorf("pod %s/%s: annotation %s (<secret>/<key>) is required", pod.Namespace, pod.Name, PasswordSecretAnnotation)
	}
	name, key, ok := strings.Cut(ref, "/")
	if !ok {
		return "", fmt.Errorf("pod %s/%s: %s %q: want <secret>/<key>", pod.Namespace, pod.Name, PasswordSecretAnnotation, ref)
	}
	s, err := c.Client.CoreV1().Secrets(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("pod %s/%s: password: %w", pod.Namespace, pod.Name, err)
	}
	pw, ok := s.Data[key]
	if !ok || len(pw) == 0 {
		return "", fmt.Errorf("pod %s/%s: secret %s has no key %q", pod.Namespace, pod.Name, name, key)
	}
	return string(pw), nil
}

// ClaimVolume returns the sandbox volume bound to claim ns/pvc (whether the sandbox made it
// or csi-provisioner did), with the directory that backs it.
func (c *Cluster) ClaimVolume(ctx context.Context, ns, pvc string) (*Volume, error) {
	claim, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, pvc, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("volume of %s/%s: %w", ns, pvc, err)
	}
	if claim.Status.Phase != corev1.ClaimBound || claim.Spec.VolumeName == "" {
		return nil, fmt.Errorf("volume of %s/%s: claim is %s", ns, pvc, claim.Status.Phase)
	}
	pv, err := c.Client.CoreV1().PersistentVolumes().Get(ctx, claim.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("volume of %s/%s: %w", ns, pvc, err)
	}
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != DriverName {
		return nil, fmt.Errorf("volume of %s/%s: %s is not a %s volume", ns, pvc, pv.Name, DriverName)
	}
	v, ok := c.Driver.Volume(pv.Spec.CSI.VolumeHandle)
	if !ok {
		return nil, fmt.Errorf("volume of %s/%s: driver has no volume %s", ns, pvc, pv.Spec.CSI.VolumeHandle)
	}
	return &Volume{Namespace: ns, PVC: pvc, PV: pv.Name, Handle: v.ID, Path: v.Path}, nil
}

// DatabaseFor waits until the server behind claim ns/pvc is running (started for an
// annotated pod) and returns it with its volume.
func (c *Cluster) DatabaseFor(ctx context.Context, ns, pvc string) (*Server, *Volume, error) {
	key := ns + "/" + pvc
	var ps *podServer
	err := waitFor(ctx, nil, 90*time.Second, "database for "+key, func(context.Context) (bool, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		ps = c.podServers[key]
		if err := c.podServerErrs[key]; err != nil {
			return ps != nil, err
		}
		return ps != nil, errors.New("no scheduled pod annotated " + DatabaseAnnotation + " uses it")
	})
	if err != nil {
		return nil, nil, err
	}
	return ps.server, ps.volume, nil
}
