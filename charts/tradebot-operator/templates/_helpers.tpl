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

{{/* The namespaces the operator watches, as JSON: the listed ones, else the release's own;
an empty list only with watchAllNamespaces (TRADEBOT_NAMESPACES empty = every namespace). */}}
{{- define "tradebot.watchedNamespaces" -}}
{{- if .Values.watchAllNamespaces -}}
[]
{{- else if .Values.watchNamespaces -}}
{{- .Values.watchNamespaces | toJson -}}
{{- else -}}
{{- list .Release.Namespace | toJson -}}
{{- end -}}
{{- end -}}

{{/* The operator pods' selector labels as JSON (TRADEBOT_OPERATOR_POD_LABELS): each bot's
NetworkPolicy admits exactly these pods, so nameOverride/fullnameOverride follow through. */}}
{{- define "tradebot.operatorPodLabels" -}}
{{- include "tradebot.selectorLabels" . | fromYaml | toJson -}}
{{- end -}}

{{/* The promotion floors as JSON (TRADEBOT_PROMOTION_FLOORS); fractions as strings so that
they reach the operator's Decimals exactly. */}}
{{- define "tradebot.promotionFloors" -}}
{{- $out := dict -}}
{{- range $mode, $f := .Values.promotion.floors -}}
{{- $floor := dict "minProfit" (toString $f.minProfit) "maxDrawdown" (toString $f.maxDrawdown) "minTrades" (int $f.minTrades) "minDryRunHours" (int $f.minDryRunHours) -}}
{{- if hasKey $f "requireHyperopt" -}}{{- $_ := set $floor "requireHyperopt" $f.requireHyperopt -}}{{- end -}}
{{- if hasKey $f "minOutOfSampleProfit" -}}{{- $_ := set $floor "minOutOfSampleProfit" (toString $f.minOutOfSampleProfit) -}}{{- end -}}
{{- if hasKey $f "requireBiasAnalysis" -}}{{- $_ := set $floor "requireBiasAnalysis" $f.requireBiasAnalysis -}}{{- end -}}
{{- if hasKey $f "maxRecursiveDifference" -}}{{- $_ := set $floor "maxRecursiveDifference" (toString $f.maxRecursiveDifference) -}}{{- end -}}
{{- $_ := set $out $mode $floor -}}
{{- end -}}
{{- $out | toJson -}}
{{- end -}}

{{/* Combinations the schema cannot express, refused at install/upgrade with the fix named. */}}
{{- define "tradebot.validate" -}}
{{- if gt (int .Values.replicaCount) 1 -}}
{{- if not .Values.leaderElection.enabled -}}
{{- fail (printf "replicaCount %v needs leaderElection.enabled: without the leader Lease every replica would act on every object" .Values.replicaCount) -}}
{{- end -}}
{{- if not .Values.database.existingSecret -}}
{{- fail (printf "replicaCount %v needs database.existingSecret (PostgreSQL): with SQLite on each pod's state volume, a failover would switch to another replica's records" .Values.replicaCount) -}}
{{- end -}}
{{- end -}}
{{- with .Values.leaderElection -}}
{{- if le (float64 .leaseDurationSeconds) (float64 .renewDeadlineSeconds) -}}
{{- fail (printf "leaderElection.leaseDurationSeconds (%v) must exceed renewDeadlineSeconds (%v): a leader must stop before a standby may take over" .leaseDurationSeconds .renewDeadlineSeconds) -}}
{{- end -}}
{{- if le (float64 .renewDeadlineSeconds) (mulf 1.2 .retryPeriodSeconds) -}}
{{- fail (printf "leaderElection.renewDeadlineSeconds (%v) must exceed 1.2 x retryPeriodSeconds (%v)" .renewDeadlineSeconds .retryPeriodSeconds) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.watchAllNamespaces .Values.watchNamespaces -}}
{{- fail "watchAllNamespaces: true watches every namespace; leave watchNamespaces empty, or set watchAllNamespaces: false to watch only the listed ones" -}}
{{- end -}}
{{- $money := list -}}
{{- range .Values.allowedModes -}}
{{- if has . (list "testnet" "live") -}}{{- $money = append $money . -}}{{- end -}}
{{- end -}}
{{- if and $money (not .Values.state.existingClaim) -}}
{{- if .Values.database.existingSecret -}}
{{- fail (printf "allowedModes contains %s, but the state volume is an emptyDir (state.existingClaim is empty): the records outbox, where incidents, runs and DCA buys wait while PostgreSQL is down, would be lost with the pod. Set state.existingClaim (a PVC; ReadWriteMany when replicaCount > 1, so the leader delivers a former leader's outbox), or allow only dryRun" (join ", " $money)) -}}
{{- else -}}
{{- fail (printf "allowedModes contains %s, but the records store is SQLite on an emptyDir (database.existingSecret and state.existingClaim are empty): an operator restart would lose the dry-run evidence and the records outbox. Set state.existingClaim (a PVC), with database.existingSecret (PostgreSQL) if you like, or allow only dryRun" (join ", " $money)) -}}
{{- end -}}
{{- end -}}
{{- range $mode, $f := .Values.promotion.floors -}}
{{- if lt (float64 (toString $f.minProfit)) -1.0 -}}
{{- fail (printf "promotion.floors.%s.minProfit must be >= -1 (a loss of the whole stake), got %v" $mode $f.minProfit) -}}
{{- end -}}
{{- $dd := float64 (toString $f.maxDrawdown) -}}
{{- if or (lt $dd 0.0) (gt $dd 1.0) -}}
{{- fail (printf "promotion.floors.%s.maxDrawdown must be a fraction between 0 and 1, got %v" $mode $f.maxDrawdown) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.admission.restrictPromotion.enabled (not .Values.admission.restrictPromotion.allowedGroups) -}}
{{- fail "admission.restrictPromotion.enabled needs admission.restrictPromotion.allowedGroups: the groups whose members may set mode live or spec.promotion.approval" -}}
{{- end -}}
{{- if and (has "live" .Values.allowedModes) (semverCompare "<1.30.0-0" .Capabilities.KubeVersion.Version) -}}
{{- fail (printf "allowedModes contains live, which ships a ValidatingAdmissionPolicy binding live bots to their approval digest: it needs Kubernetes >= 1.30; this cluster is %s" .Capabilities.KubeVersion.Version) -}}
{{- end -}}
{{- if and .Values.admission.restrictPromotion.enabled (semverCompare "<1.30.0-0" .Capabilities.KubeVersion.Version) -}}
{{- fail (printf "admission.restrictPromotion needs ValidatingAdmissionPolicy v1 (Kubernetes >= 1.30); this cluster is %s" .Capabilities.KubeVersion.Version) -}}
{{- end -}}
{{- end -}}

{{/* The leader Lease's name: leaderElection.leaseName, or the release's full name. */}}
{{- define "tradebot.leaderLeaseName" -}}
{{- .Values.leaderElection.leaseName | default (include "tradebot.fullname" .) -}}
{{- end -}}
