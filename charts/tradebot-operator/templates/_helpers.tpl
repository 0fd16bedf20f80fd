{{/* Names and labels shared by every template. */}}
{{- define "tradebot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tradebot.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else if contains (include "tradebot.name" .) .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "tradebot.name" .) | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tradebot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tradebot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tradebot.labels" -}}
{{ include "tradebot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tradebot-operator
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "tradebot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tradebot.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tradebot.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The settings' GPU profiles as JSON (TRADEBOT_GPU_PROFILES), in the operator's field names. */}}
{{- define "tradebot.gpuProfiles" -}}
{{- $out := dict -}}
{{- range $vendor, $p := .Values.gpu.profiles -}}
{{- $_ := set $out $vendor (dict "resource" $p.resource "node_selector" $p.nodeSelector "tolerations" $p.tolerations) -}}
{{- end -}}
{{- $out | toJson -}}
{{- end -}}
