{{/* Names and labels shared by every template. */}}
{{- define "embedding-operator.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "embedding-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "embedding-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "embedding-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "embedding-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "embedding-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "embedding-operator.serviceAccountName" -}}
{{- default (include "embedding-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* Namespaces served when not cluster-wide: the list, or the release namespace. */}}
{{- define "embedding-operator.namespaces" -}}
{{- if .Values.watch.namespaces -}}
{{- join "," .Values.watch.namespaces -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* The operator's permissions: explicit verbs only, nothing else. */}}
{{- define "embedding-operator.rules" -}}
- apiGroups: ["embedding.dev"]
  resources: ["embeddingjobs"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["embedding.dev"]
  resources: ["embeddingjobs/status"]
  verbs: ["get", "patch", "update"]
# Owner references with blockOwnerDeletion (on the RayJob and the job's identity objects) need
# this where OwnerReferencesPermissionEnforcement is on (OpenShift's default).
- apiGroups: ["embedding.dev"]
  resources: ["embeddingjobs/finalizers"]
  verbs: ["update"]
- apiGroups: ["ray.io"]
  resources: ["rayjobs"]
  verbs: ["get", "list", "watch", "create", "patch"]
# A job's Ray pods, read to say why they do not start (an image that cannot be pulled, no node
# with the GPUs asked for).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
# Each job's own identity: a ServiceAccount and a Role that can only read and patch its
# EmbeddingJob's status.
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get", "create"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "create"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/* kopf discovers resources by watching CRDs, which are cluster-scoped: read-only. */}}
{{- define "embedding-operator.discoveryRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- end -}}

{{/* The tenancy's NFS exports as "server:/path,server:/path" (the operator's form). */}}
{{- define "embedding-operator.nfsExports" -}}
{{- $exports := list }}
{{- range .Values.tenancy.allowedNfs }}{{ $exports = append $exports (printf "%s:%s" .server .path) }}{{ end }}
{{- join "," $exports }}
{{- end -}}
