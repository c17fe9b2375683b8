{{/*
Chart name, truncated to the 63 characters Kubernetes names allow.
*/}}
{{- define "origin-cluster-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the release name, with the chart name appended unless the release
name already contains it.
*/}}
{{- define "origin-cluster-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "origin-cluster-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: stable for the life of a release.
*/}}
{{- define "origin-cluster-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "origin-cluster-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Common labels for every object of the chart.
*/}}
{{- define "origin-cluster-operator.labels" -}}
helm.sh/chart: {{ include "origin-cluster-operator.chart" . }}
{{ include "origin-cluster-operator.selectorLabels" . }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: origin-cluster
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "origin-cluster-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "origin-cluster-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Namespace the operator watches when rbac.scope=namespace.
*/}}
{{- define "origin-cluster-operator.watchNamespace" -}}
{{- default .Release.Namespace .Values.rbac.namespace }}
{{- end }}

{{- define "origin-cluster-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The operator's namespaced permissions (OriginClusters and their children).
Keep in step with operator/src/rbac.rs (`crdgen rbac`); tests/helm compares
the rendered rules with that list as (group, resource, verb) triples.
*/}}
{{- define "origin-cluster-operator.rules" -}}
- apiGroups: ["origincluster.dev"]
  resources: ["originclusters"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["origincluster.dev"]
  resources: ["originclusters/status"]
  verbs: ["get", "patch"]
# Owner references with blockOwnerDeletion on the children.
- apiGroups: ["origincluster.dev"]
  resources: ["originclusters/finalizers"]
  verbs: ["update"]
# Children are applied server-side and garbage-collected through owner references.
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Services: per-pod Services (advertise: PerPodService) are deleted on scale-down.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The admin-token Secret is read and created once: never listed, watched or changed.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
Cluster-scoped reads: the operator checks at start that its CRD is installed
(one clear error line instead of failing watches). Only that one CRD.
*/}}
{{- define "origin-cluster-operator.clusterRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  resourceNames: ["originclusters.origincluster.dev"]
  verbs: ["get"]
{{- end }}

{{- define "origin-cluster-operator.leaseName" -}}
{{- default (include "origin-cluster-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
Leader election: the operator's own Lease in its namespace. `create` cannot be
limited by name (the object does not exist yet); the rest can.
*/}}
{{- define "origin-cluster-operator.leaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  resourceNames: [{{ include "origin-cluster-operator.leaseName" . | quote }}]
  verbs: ["get", "update"]
{{- end }}
