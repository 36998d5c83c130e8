{{/*
The chart name, truncated to 63 characters (DNS label).
*/}}
{{- define "meson.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects. The ClusterRole and ClusterRoleBinding are cluster-scoped, so
it includes the release name: two releases (in two namespaces) never share them. A release whose name
already contains the chart name is not repeated ("meson", not "meson-meson").
*/}}
{{- define "meson.fullname" -}}
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

{{/*
chart label: name-version.
*/}}
{{- define "meson.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "meson.labels" -}}
helm.sh/chart: {{ include "meson.chart" . }}
{{ include "meson.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels (immutable on a Deployment: never add to them).
*/}}
{{- define "meson.selectorLabels" -}}
app.kubernetes.io/name: {{ include "meson.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount the operator runs as.
*/}}
{{- define "meson.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "meson.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The webhook mode: "off", "in-cluster" or "loopback" (values.schema.json refuses anything else). An unquoted
`off` in a values file is the YAML boolean false; it is read as "off".
*/}}
{{- define "meson.webhookMode" -}}
{{- $mode := toString .Values.webhook.mode }}
{{- if and (kindIs "bool" .Values.webhook.mode) (eq $mode "false") }}
{{- $mode = "off" }}
{{- end }}
{{- if not (has $mode (list "off" "in-cluster" "loopback")) }}
{{- fail (printf "webhook.mode must be \"off\", \"in-cluster\" or \"loopback\", got %q" $mode) }}
{{- end }}
{{- $mode }}
{{- end }}

{{/*
The in-cluster webhook's objects: the Service, the Secret with its certificate, the
ValidatingWebhookConfiguration (cluster-scoped, so named after the release).
*/}}
{{- define "meson.webhookService" -}}
{{- printf "%s-webhook" (include "meson.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "meson.webhookSecret" -}}
{{- printf "%s-webhook-tls" (include "meson.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "meson.webhookConfiguration" -}}
{{- printf "%s-webhook" (include "meson.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{/*
"true" when the operator manages the webhook certificate itself (in-cluster without cert-manager).
*/}}
{{- define "meson.webhookManagedCert" -}}
{{- if and (eq (include "meson.webhookMode" .) "in-cluster") (not .Values.webhook.certManager.enabled) }}true{{ end }}
{{- end }}

{{/*
The image reference: repository:tag, the tag defaulting to the chart's appVersion.
*/}}
{{- define "meson.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}
