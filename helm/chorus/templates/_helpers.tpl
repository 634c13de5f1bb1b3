{{/*
Chart name, truncated to 63 characters (DNS label limit).
*/}}
{{- define "chorus.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: release-chart unless the release name already contains the chart name.
*/}}
{{- define "chorus.fullname" -}}
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

{{- define "chorus.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "chorus.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chorus.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "chorus.labels" -}}
helm.sh/chart: {{ include "chorus.chart" . }}
{{ include "chorus.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "chorus.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "chorus.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Name of the Secret holding the HMAC key and the API key.
*/}}
{{- define "chorus.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else }}
{{- include "chorus.fullname" . }}
{{- end }}
{{- end }}

{{- define "chorus.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}

{{/*
Container port: the configured http_server.port (default 8000).
*/}}
{{- define "chorus.containerPort" -}}
{{- $http := default dict (get .Values.config "http_server") }}
{{- default 8000 (get $http "port") | int }}
{{- end }}

{{/*
Where the Redis password comes from: {name, key}, or nothing when there is no password.
*/}}
{{- define "chorus.redisPasswordRef" -}}
{{- if .Values.redis.existingSecret -}}
{"name": {{ .Values.redis.existingSecret | quote }}, "key": {{ .Values.redis.existingSecretPasswordKey | quote }}}
{{- else if .Values.redis.password -}}
{"name": {{ include "chorus.secretName" . | quote }}, "key": {{ .Values.secrets.redisPasswordKey | quote }}}
{{- else -}}
{}
{{- end -}}
{{- end }}

{{/*
The named container port that serves /health, /ready, /metrics and the API: `internal` with
internal.port set, else `http`.
*/}}
{{- define "chorus.opsPort" -}}
{{- if gt (int .Values.internal.port) 0 }}internal{{ else }}http{{ end }}
{{- end }}

{{/*
Presence service: its own app name, so the gateway's selector never matches its pods.
*/}}
{{- define "chorus.presence.fullname" -}}
{{- printf "%s-presence" (include "chorus.fullname" .) | trunc 52 | trimSuffix "-" }}
{{- end }}

{{- define "chorus.presence.headless" -}}
{{- printf "%s-headless" (include "chorus.presence.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "chorus.presence.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-presence" (include "chorus.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "chorus.presence.labels" -}}
helm.sh/chart: {{ include "chorus.chart" . }}
{{ include "chorus.presence.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: presence
{{- end }}

{{/*
Per-replica gRPC URLs of the presence service (stable StatefulSet pod names behind the
headless Service): every gateway streams to every replica.
*/}}
{{- define "chorus.presence.endpoints" -}}
{{- $name := include "chorus.presence.fullname" . }}
{{- $svc := include "chorus.presence.headless" . }}
{{- $eps := list }}
{{- range $i := until (int .Values.presence.replicaCount) }}
{{- $eps = append $eps (printf "http://%s-%d.%s.%s.svc:%d" $name $i $svc $.Release.Namespace (int $.Values.presence.port)) }}
{{- end }}
{{- toJson $eps }}
{{- end }}

{{/*
The gateway's config.json: .Values.config, plus presence.endpoints when presence.enabled and
grpc_api.port when grpcApi.enabled.
*/}}
{{- define "chorus.gatewayConfig" -}}
{{- $cfg := deepCopy .Values.config }}
{{- if .Values.presence.enabled }}
{{- $p := default dict (get $cfg "presence") }}
{{- $_ := set $p "endpoints" (include "chorus.presence.endpoints" . | fromJsonArray) }}
{{- $_ := set $p "flush_interval" .Values.presence.flushInterval }}
{{- $_ := set $cfg "presence" $p }}
{{- end }}
{{- if .Values.redis.addresses }}
{{- $e := deepCopy (default dict (get $cfg "engine")) }}
{{- $r := deepCopy (default dict (get $e "redis")) }}
{{- $_ := set $e "type" "redis" }}
{{- $_ := set $r "address" .Values.redis.addresses }}
{{- $_ := set $r "cluster" .Values.redis.cluster }}
{{- if .Values.redis.user }}{{ $_ := set $r "user" .Values.redis.user }}{{ end }}
{{- $_ := set $e "redis" $r }}
{{- $_ := set $cfg "engine" $e }}
{{- end }}
{{- if gt (int .Values.internal.port) 0 }}
{{- $h := deepCopy (default dict (get $cfg "http_server")) }}
{{- $_ := set $h "internal_port" (int .Values.internal.port) }}
{{- $_ := set $cfg "http_server" $h }}
{{- end }}
{{- if .Values.grpcApi.enabled }}
{{- $g := deepCopy (default dict (get $cfg "grpc_api")) }}
{{- $_ := set $g "enabled" true }}
{{- $_ := set $g "port" (int .Values.grpcApi.port) }}
{{- $_ := set $cfg "grpc_api" $g }}
{{- end }}
{{- toPrettyJson $cfg }}
{{- end }}
