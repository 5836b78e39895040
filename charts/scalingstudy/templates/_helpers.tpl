{{- define "scalingstudy.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "scalingstudy.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "scalingstudy.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "scalingstudy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "scalingstudy.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The rules the operator needs, and nothing more: see README "Permissions". */}}
{{- define "scalingstudy.rules" -}}
- apiGroups: ["scalingstudy.io"]
  resources: ["scalingstudies"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["scalingstudy.io"]
  resources: ["scalingstudies/status"]
  verbs: ["patch"]
# Owner references with blockOwnerDeletion (every Job, ConfigMap and Service a study owns)
# need this where OwnerReferencesPermissionEnforcement is on (OpenShift's default).
- apiGroups: ["scalingstudy.io"]
  resources: ["scalingstudies/finalizers"]
  verbs: ["update"]
# patch: a pruned trial's Job is annotated with the decision before it is deleted, so a
# restarted operator records it and never prunes it twice (no other field is written).
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["list", "watch", "create", "delete", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
# A trial's curve is its pod 0's log: the one channel only the trial writes (pruning).
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
# The time a trial was admitted before a Kueue preemption (its Workload keeps it; the
# Job's start time restarts) counts in the spend.
- apiGroups: ["kueue.x-k8s.io"]
  resources: ["workloads"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "create"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["create", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "list"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}
