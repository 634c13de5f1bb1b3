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
{{- else if or .Values.redis.password .Values.redis.generatePassword -}}
{"name": {{ include "chorus.secretName" . | quote }}, "key": {{ .Values.secrets.redisPasswordKey | quote }}}
{{- else -}}
{}
{{- end -}}
{{- end }}

{{/*
Where the Redis Sentinels' password comes from: {name, key}, or nothing without one.
*/}}
{{- define "chorus.redisSentinelPasswordRef" -}}
{{- $s := .Values.redis.sentinel }}
{{- if $s.existingSecret -}}
{"name": {{ $s.existingSecret | quote }}, "key": {{ $s.existingSecretPasswordKey | quote }}}
{{- else if $s.password -}}
{"name": {{ include "chorus.secretName" . | quote }}, "key": {{ .Values.secrets.redisSentinelPasswordKey | quote }}}
{{- else -}}
{}
{{- end -}}
{{- end }}

{{/*
Where redis.tls.existingSecret is mounted (outside /etc/chorus: the ConfigMap volume there is
read-only, so no mount point can be created inside it).
*/}}
{{- define "chorus.redisTlsDir" -}}/etc/chorus-redis-tls{{- end }}

{{/*
The redis.* values, checked: "true" when the chart configures the Redis engine, "" when not;
inconsistent combinations fail the render with a message naming the values.
*/}}
{{- define "chorus.redisEnabled" -}}
{{- $r := .Values.redis }}
{{- if and $r.addresses $r.sentinel.addresses }}
{{- fail "redis.addresses and redis.sentinel.addresses are exclusive: with Sentinel the master's address comes from the Sentinels" }}
{{- end }}
{{- if $r.sentinel.addresses }}
{{- if not $r.sentinel.masterName }}{{ fail "redis.sentinel.addresses needs redis.sentinel.masterName" }}{{ end }}
{{- if $r.cluster }}{{ fail "redis.sentinel.addresses cannot be used with redis.cluster: true" }}{{ end }}
{{- end }}
{{- $on := or $r.addresses $r.sentinel.addresses }}
{{- if and (not $r.sentinel.addresses) (or $r.sentinel.masterName $r.sentinel.user $r.sentinel.password $r.sentinel.existingSecret $r.sentinel.tls) }}
{{- fail "redis.sentinel.masterName, user, password, existingSecret and tls need redis.sentinel.addresses" }}
{{- end }}
{{- if and (not $on) (or $r.tls.enabled $r.tls.existingSecret $r.tls.insecureSkipVerify) }}
{{- fail "redis.tls.* needs redis.addresses or redis.sentinel.addresses" }}
{{- end }}
{{- if and $r.tls.clientCert (not $r.tls.existingSecret) }}
{{- fail "redis.tls.clientCert needs redis.tls.existingSecret (the Secret holding the client certificate and key)" }}
{{- end }}
{{- if and $r.tls.existingSecret (not $r.tls.caKey) (not $r.tls.clientCert) }}
{{- fail "redis.tls.existingSecret is set but nothing is taken from it: set redis.tls.caKey and/or redis.tls.clientCert" }}
{{- end }}
{{- if $on }}true{{ end }}
{{- end }}

{{/*
"true" when the pods serve TLS (config.http_server.tls.cert_pem_file): probes and the scrape
then use https on every listener.
*/}}
{{- define "chorus.podTls" -}}
{{- if dig "http_server" "tls" "cert_pem_file" "" .Values.config }}true{{ end }}
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
The gateway's config.json: .Values.config, plus presence.endpoints when presence.enabled,
engine.redis.* from redis.*, internal_port from internal.port, admin.enabled from
admin.enabled and grpc_api.port when grpcApi.enabled.
*/}}
{{- define "chorus.gatewayConfig" -}}
{{- $cfg := deepCopy .Values.config }}
{{- if .Values.presence.enabled }}
{{- $p := default dict (get $cfg "presence") }}
{{- $_ := set $p "endpoints" (include "chorus.presence.endpoints" . | fromJsonArray) }}
{{- $_ := set $p "flush_interval" .Values.presence.flushInterval }}
{{- $_ := set $cfg "presence" $p }}
{{- end }}
{{- if include "chorus.redisEnabled" . }}
{{- $v := .Values.redis }}
{{- $e := deepCopy (default dict (get $cfg "engine")) }}
{{- $r := deepCopy (default dict (get $e "redis")) }}
{{- $_ := set $e "type" "redis" }}
{{- if $v.sentinel.addresses }}
{{- $_ := set $r "sentinel_address" $v.sentinel.addresses }}
{{- $_ := set $r "sentinel_master_name" $v.sentinel.masterName }}
{{- if $v.sentinel.user }}{{ $_ := set $r "sentinel_user" $v.sentinel.user }}{{ end }}
{{- if $v.sentinel.tls }}{{ $_ := set $r "sentinel_tls" (dict "enabled" true) }}{{ end }}
{{- else }}
{{- $_ := set $r "address" $v.addresses }}
{{- $_ := set $r "cluster" $v.cluster }}
{{- end }}
{{- if $v.user }}{{ $_ := set $r "user" $v.user }}{{ end }}
{{- if or $v.tls.enabled $v.tls.existingSecret $v.tls.insecureSkipVerify }}
{{- $t := deepCopy (default dict (get $r "tls")) }}
{{- if $v.tls.enabled }}{{ $_ := set $t "enabled" true }}{{ end }}
{{- if $v.tls.insecureSkipVerify }}{{ $_ := set $t "insecure_skip_verify" true }}{{ end }}
{{- if $v.tls.existingSecret }}
{{- $dir := include "chorus.redisTlsDir" . }}
{{- if $v.tls.caKey }}{{ $_ := set $t "server_ca_pem_file" (printf "%s/ca.crt" $dir) }}{{ end }}
{{- if $v.tls.clientCert }}
{{- $_ := set $t "cert_pem_file" (printf "%s/tls.crt" $dir) }}
{{- $_ := set $t "key_pem_file" (printf "%s/tls.key" $dir) }}
{{- end }}
{{- end }}
{{- $_ := set $r "tls" $t }}
{{- end }}
{{- $_ := set $e "redis" $r }}
{{- $_ := set $cfg "engine" $e }}
{{- end }}
{{- if gt (int .Values.internal.port) 0 }}
{{- $h := deepCopy (default dict (get $cfg "http_server")) }}
{{- $_ := set $h "internal_port" (int .Values.internal.port) }}
{{- $_ := set $cfg "http_server" $h }}
{{- end }}
{{- if .Values.admin.enabled }}
{{- $a := deepCopy (default dict (get $cfg "admin")) }}
{{- $_ := set $a "enabled" true }}
{{- $_ := set $cfg "admin" $a }}
{{- end }}
{{- if .Values.grpcApi.enabled }}
{{- $g := deepCopy (default dict (get $cfg "grpc_api")) }}
{{- $_ := set $g "enabled" true }}
{{- $_ := set $g "port" (int .Values.grpcApi.port) }}
{{- $_ := set $cfg "grpc_api" $g }}
{{- end }}
{{- toPrettyJson $cfg }}
{{- end }}
