{{/* The four services, in pipeline order. */}}
{{- define "freezeframe.services" -}}
scheduler hooker snapshotter notifier
{{- end }}

{{- define "freezeframe.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name: ClusterRoles are cluster-wide, so every name carries it. */}}
{{- define "freezeframe.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Name of one service's objects. Argument: (list $ "hooker"). */}}
{{- define "freezeframe.componentName" -}}
{{- $ := index . 0 -}}
{{- printf "%s-%s" (include "freezeframe.fullname" $) (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "freezeframe.labels" -}}
{{- $ := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $.Chart.Name $.Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "freezeframe.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/version: {{ $.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $.Release.Service }}
app.kubernetes.io/part-of: freezeframe
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "freezeframe.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "freezeframe.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "freezeframe.image" -}}
{{- $ := index . 0 -}}
{{- printf "%s/%s:%s" $.Values.image.registry (index . 1) ($.Values.image.tag | default $.Chart.AppVersion) }}
{{- end }}

{{/* The NATS URL: set, or the bundled chart's client Service, or a NATS named "nats". */}}
{{- define "freezeframe.natsURL" -}}
{{- if .Values.natsConnection.url }}
{{- .Values.natsConnection.url }}
{{- else if .Values.nats.enabled }}
{{- $svc := "" }}
{{- if .Values.nats.fullnameOverride }}
{{- $svc = .Values.nats.fullnameOverride }}
{{- else if contains "nats" .Release.Name }}
{{- $svc = .Release.Name }}
{{- else }}
{{- $svc = printf "%s-nats" .Release.Name }}
{{- end }}
{{- printf "nats://%s.%s.svc:4222" ($svc | trunc 63 | trimSuffix "-") .Release.Namespace }}
{{- else }}
{{- printf "nats://nats.%s.svc:4222" .Release.Namespace }}
{{- end }}
{{- end }}

{{/*
Namespaces the hooker searches for a blueprint after the workload's own, as JSON:
"all" is HOOKER_BLUEPRINT_NAMESPACES, in order; "required" are those it is always granted
blueprint reads in when rbac.namespaces restricts it; "optional" those granted only if they
exist at install or upgrade (the Kanister and K10 defaults, which most clusters lack).
*/}}
{{- define "freezeframe.blueprintNamespaces" -}}
{{- $h := .Values.hooker }}
{{- $required := list }}
{{- $optional := list }}
{{- if $h.blueprintNamespaces }}
{{- $required = $h.blueprintNamespaces }}
{{- else if $h.blueprintNamespace }}
{{- /* deprecated: one namespace instead of the list */}}
{{- $required = list $h.blueprintNamespace }}
{{- else }}
{{- $required = list .Release.Namespace }}
{{- $optional = without (list "kanister" "kasten-io") .Release.Namespace }}
{{- end }}
{{- dict "all" (concat $required $optional | uniq) "required" ($required | uniq) "optional" $optional | toJson }}
{{- end }}

{{/*
hooker.execAllow as HOOKER_EXEC_ALLOW: "namespace:selector" entries joined by ";".
*/}}
{{- define "freezeframe.execAllow" -}}
{{- $entries := list }}
{{- range $i, $e := .Values.hooker.execAllow }}
{{- $ns := required (printf "hooker.execAllow[%d].namespace is required" $i) $e.namespace }}
{{- $sel := required (printf "hooker.execAllow[%d].podSelector is required (a label selector, e.g. app=backup-agent)" $i) $e.podSelector }}
{{- if contains ";" $sel }}
{{- fail (printf "hooker.execAllow[%d].podSelector must not contain \";\"" $i) }}
{{- end }}
{{- $entries = append $entries (printf "%s:%s" $ns $sel) }}
{{- end }}
{{- join ";" $entries }}
{{- end }}

{{/* The namespaces of hooker.execAllow, as a JSON list. */}}
{{- define "freezeframe.execAllowNamespaces" -}}
{{- $out := list }}
{{- range .Values.hooker.execAllow }}
{{- $out = append $out .namespace }}
{{- end }}
{{- $out | uniq | toJson }}
{{- end }}

{{/*
RBAC rule sets per service, from what each service calls (see the README's RBAC table).
"namespaced: true" sets are Roles in rbac.namespaces (cluster-wide only with
rbac.clusterWide=true); the others are always cluster-wide, either because the resource is
cluster-scoped or because the service lists it in all namespaces. "alsoIn" adds namespaces to a
namespaced set; "alsoInIfPresent" adds those among them that exist (a lookup: `helm template`
sees none); "workloadNamespaces: false" leaves rbac.namespaces out.
*/}}
{{- define "freezeframe.ruleSets" -}}
{{- $bp := include "freezeframe.blueprintNamespaces" . | fromJson }}
scheduler:
- name: workloads
  namespaced: true
  rules:
  # Ad-hoc requests: get the workload; policies: list workloads by label selector.
  - apiGroups: [apps]
    resources: [deployments, statefulsets]
    verbs: [get, list]
{{- if .Values.scheduler.policies }}
- name: policies
  namespaced: false
  rules:
  # The policy runner lists BackupPolicies in all namespaces and writes their status.
  - apiGroups: [freezeframe.io]
    resources: [backuppolicies]
    verbs: [list]
  - apiGroups: [freezeframe.io]
    resources: [backuppolicies/status]
    verbs: [update]
{{- end }}
hooker:
- name: workloads
  namespaced: true
  rules:
  # The workload and its running pods; each hook's target pod is read again just before
  # the exec, to check it is still the workload's.
  - apiGroups: [apps]
    resources: [deployments, statefulsets]
    verbs: [get]
  - apiGroups: [""]
    resources: [pods]
    verbs: [get, list]
  # Hooks: exec over WebSocket (GET) with a fallback to SPDY (POST = create).
  - apiGroups: [""]
    resources: [pods/exec]
    verbs: [create, get]
- name: blueprints
  namespaced: true
  # In the workloads' namespaces only if blueprints there are used.
  workloadNamespaces: {{ .Values.hooker.namespacedBlueprints }}
  alsoIn: {{ $bp.required | toJson }}
  alsoInIfPresent: {{ $bp.optional | toJson }}
  rules:
  # Looked up by name in each blueprint namespace (first in the workload's namespace
  # with hooker.namespacedBlueprints).
  - apiGroups: [freezeframe.io, cr.kanister.io]
    resources: [blueprints]
    verbs: [get]
{{- /* With rbac.clusterWide, the workloads set already grants this everywhere. */}}
{{- with and (not .Values.rbac.clusterWide) (include "freezeframe.execAllowNamespaces" . | fromJsonArray) }}
- name: exec-allow
  namespaced: true
  workloadNamespaces: false
  alsoIn: {{ toJson . }}
  rules:
  # hooker.execAllow: helper pods outside the workloads that hooks may exec into.
  - apiGroups: [""]
    resources: [pods]
    verbs: [get]
  - apiGroups: [""]
    resources: [pods/exec]
    verbs: [create, get]
{{- end }}
{{- if .Values.scheduler.policies }}
- name: policies
  namespaced: false
  rules:
  # A scheduled request's snapshotsToKeep counts only when the BackupPolicy it names says it.
  - apiGroups: [freezeframe.io]
    resources: [backuppolicies]
    verbs: [get]
{{- end }}
snapshotter:
- name: snapshots
  namespaced: false
  rules:
  # Shared watches over all namespaces: VolumeSnapshots and VolumeGroupSnapshots (each cut
  # at creationTime, then readyToUse), and the claims (which driver and class a volume has,
  # read from a cache while the application is frozen).
  - apiGroups: [snapshot.storage.k8s.io]
    resources: [volumesnapshots]
    verbs: [list, watch]
  - apiGroups: [groupsnapshot.storage.k8s.io]
    resources: [volumegroupsnapshots]
    verbs: [list, watch]
  - apiGroups: [""]
    resources: [persistentvolumeclaims]
    verbs: [list, watch]
  # Cluster-scoped: classes (cached), contents, volumes and storage classes.
  - apiGroups: [snapshot.storage.k8s.io]
    resources: [volumesnapshotclasses, volumesnapshotcontents]
    verbs: [get, list, watch]
  # A restore into another namespace copies a snapshot there as a pre-provisioned
  # VolumeSnapshotContent (deletionPolicy Retain) over the same storage snapshot.
  - apiGroups: [snapshot.storage.k8s.io]
    resources: [volumesnapshotcontents]
    verbs: [create]
  - apiGroups: [groupsnapshot.storage.k8s.io]
    resources: [volumegroupsnapshotclasses, volumegroupsnapshotcontents]
    verbs: [get, list, watch]
  - apiGroups: [""]
    resources: [persistentvolumes]
    verbs: [get]
  - apiGroups: [storage.k8s.io]
    resources: [storageclasses]
    verbs: [get, list, watch]
{{- if .Values.snapshotter.inPlaceRestore }}
  # An in-place restore sets the old claims' volumes to Retain before deleting the claims.
  - apiGroups: [""]
    resources: [persistentvolumes]
    verbs: [patch]
{{- end }}
- name: workloads
  namespaced: true
  rules:
  # One snapshot per volume, or one group snapshot per workload; retention deletes old ones;
  # a group's member snapshots are labelled with the backup once it is ready.
  - apiGroups: [snapshot.storage.k8s.io]
    resources: [volumesnapshots]
    verbs: [get, create, delete, patch]
  - apiGroups: [groupsnapshot.storage.k8s.io]
    resources: [volumegroupsnapshots]
    verbs: [get, create, delete]
  # A group snapshot selects its claims by label: the snapshotter labels them. A restore
  # creates claims from snapshots (in the target namespace, with the VolumeSnapshot
  # create above when it copies a snapshot there).
  - apiGroups: [""]
    resources: [persistentvolumeclaims]
    verbs: [get, patch, create]
  # The workload resolver, when a Quiesced event carries no volumes.
  - apiGroups: [apps]
    resources: [deployments, statefulsets]
    verbs: [get]
  - apiGroups: [""]
    resources: [pods]
    verbs: [list]
{{- if .Values.snapshotter.inPlaceRestore }}
  # An in-place restore scales the workload down and up (its state recorded in an
  # annotation) and deletes the claims it remakes.
  - apiGroups: [apps]
    resources: [deployments, statefulsets]
    verbs: [patch]
  - apiGroups: [""]
    resources: [persistentvolumeclaims]
    verbs: [delete]
{{- end }}
notifier: []
{{- end }}

{{/* Pod-level settings: the service's own, else the chart-wide default. */}}
{{- define "freezeframe.pick" -}}
{{- $ := index . 0 -}}
{{- $c := index $.Values (index . 1) }}
{{- $key := index . 2 }}
{{- $v := index $c $key | default (index $.Values $key) }}
{{- if $v }}{{ toYaml $v }}{{ end }}
{{- end }}

{{/*
The Secret holding a role's nkey seed: its existingSecret, or the one the chart makes from
its seed, or "" when the role has no identity of its own. Argument: (list $ "hooker").
*/}}
{{- define "freezeframe.identitySecret" -}}
{{- $ := index . 0 -}}
{{- $role := index . 1 -}}
{{- $id := index $.Values.natsConnection.identities $role | default dict -}}
{{- if $id.existingSecret }}
{{- $id.existingSecret }}
{{- else if $id.seed }}
{{- printf "%s-nats" (include "freezeframe.componentName" (list $ $role)) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
Env and volume for NATS credentials and TLS, shared by the services and the setup Job.
Argument: (list $ "hooker" "HOOKER_"): the role and the prefix of its NATS_NKEY.
"env" renders the variables, "mounts" the volumeMounts, "volumes" the volumes.
*/}}
{{- define "freezeframe.natsEnv" -}}
{{- $ := index . 0 -}}
{{- $role := index . 1 -}}
{{- $prefix := index . 2 -}}
{{- $auth := $.Values.natsConnection.auth -}}
{{- $tls := $.Values.natsConnection.tls -}}
{{- $identity := include "freezeframe.identitySecret" (list $ $role) -}}
- name: NATS_URL
  value: {{ include "freezeframe.natsURL" $ | quote }}
{{- if $identity }}
{{- /* The role's own identity; prefixed, so it wins over a NATS_NKEY set in env. */}}
- name: {{ $prefix }}NATS_NKEY
  value: /etc/freezeframe/nats-identity/seed.nk
{{- else }}
{{- if and $auth.secretName $auth.credsKey }}
- name: NATS_CREDS
  value: /etc/freezeframe/nats-auth/{{ $auth.credsKey }}
{{- end }}
{{- if and $auth.secretName $auth.nkeyKey }}
- name: NATS_NKEY
  value: /etc/freezeframe/nats-auth/{{ $auth.nkeyKey }}
{{- end }}
{{- end }}
{{- if and $tls.secretName $tls.caKey }}
- name: NATS_TLS_CA
  value: /etc/freezeframe/nats-tls/{{ $tls.caKey }}
{{- end }}
{{- if and $tls.secretName $tls.certKey }}
- name: NATS_TLS_CERT
  value: /etc/freezeframe/nats-tls/{{ $tls.certKey }}
- name: NATS_TLS_KEY
  value: /etc/freezeframe/nats-tls/{{ required "natsConnection.tls.keyKey is required with certKey" $tls.keyKey }}
{{- end }}
- name: STREAM
  value: {{ $.Values.natsConnection.stream | quote }}
- name: STREAM_REPLICAS
  value: {{ $.Values.natsConnection.streamReplicas | quote }}
- name: STREAM_MAX_AGE
  value: {{ $.Values.natsConnection.streamMaxAge | quote }}
{{- end }}

{{- define "freezeframe.natsMounts" -}}
{{- $ := index . 0 -}}
{{- $role := index . 1 -}}
{{- if include "freezeframe.identitySecret" (list $ $role) }}
- name: nats-identity
  mountPath: /etc/freezeframe/nats-identity
  readOnly: true
{{- else if $.Values.natsConnection.auth.secretName }}
- name: nats-auth
  mountPath: /etc/freezeframe/nats-auth
  readOnly: true
{{- end }}
{{- if $.Values.natsConnection.tls.secretName }}
- name: nats-tls
  mountPath: /etc/freezeframe/nats-tls
  readOnly: true
{{- end }}
{{- end }}

{{- define "freezeframe.natsVolumes" -}}
{{- $ := index . 0 -}}
{{- $role := index . 1 -}}
{{- $identity := include "freezeframe.identitySecret" (list $ $role) -}}
{{- if $identity }}
{{- /* Only the seed, under a fixed name, whatever else the Secret holds. */}}
- name: nats-identity
  secret:
    secretName: {{ $identity }}
    defaultMode: 0440
    items:
    - key: {{ $.Values.natsConnection.identities.seedKey | default "seed.nk" }}
      path: seed.nk
{{- else if $.Values.natsConnection.auth.secretName }}
- name: nats-auth
  secret:
    secretName: {{ $.Values.natsConnection.auth.secretName }}
    defaultMode: 0440
{{- end }}
{{- if $.Values.natsConnection.tls.secretName }}
- name: nats-tls
  secret:
    secretName: {{ $.Values.natsConnection.tls.secretName }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{/*
When `freezeframe setup` runs: before the services on install and upgrade, or after them
with the bundled NATS, which does not exist before the release's resources.
*/}}
{{- define "freezeframe.setupHook" -}}
{{- if .Values.nats.enabled -}}
post-install,post-upgrade
{{- else -}}
pre-install,pre-upgrade
{{- end }}
{{- end }}
