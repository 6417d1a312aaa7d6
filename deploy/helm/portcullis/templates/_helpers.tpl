{{/* Chart name, overridable. */}}
{{- define "portcullis.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, or just the release name when it already contains the chart name. */}}
{{- define "portcullis.fullname" -}}
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

{{- define "portcullis.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "portcullis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "portcullis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "portcullis.labels" -}}
helm.sh/chart: {{ include "portcullis.chart" . }}
{{ include "portcullis.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "portcullis.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "portcullis.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding client-secret and session-secrets. */}}
{{- define "portcullis.secretName" -}}
{{- default (include "portcullis.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/*
config.toml: .Values.config with the listen addresses the chart owns, rendered with toToml.
Helm reads numbers in values files as floats, which toToml writes as "4.0"; portcullis has
no fractional settings, so a whole number written that way is turned back into an integer.
*/}}
{{- define "portcullis.configToml" -}}
{{- $config := deepCopy (.Values.config | default dict) }}
{{- $server := get $config "server" | default dict }}
{{- range $key := list "listen" "metrics_listen" }}
{{- if hasKey $server $key }}
{{- fail (printf "config.server.%s is set by the chart: use listenAddress/containerPort and metrics.*" $key) }}
{{- end }}
{{- end }}
{{- $oidc := get $config "oidc" | default dict }}
{{- $session := get $config "session" | default dict }}
{{- if or (hasKey $oidc "client_secret") (hasKey $oidc "client_secret_file") (hasKey $session "secrets") }}
{{- fail "secrets do not belong in config: use secrets.clientSecret/secrets.sessionSecrets or secrets.existingSecret" }}
{{- end }}
{{- $upstream := get $config "upstream" | default dict }}
{{- $_ := required "config.upstream.url is required" (get $upstream "url") }}
{{- $_ := required "config.oidc.issuer is required" (get $oidc "issuer") }}
{{- $_ := required "config.oidc.client_id is required" (get $oidc "client_id") }}
{{- $_ := required "config.oidc.redirect_url is required" (get $oidc "redirect_url") }}
{{- $_ := set $server "listen" (printf "%s:%d" .Values.listenAddress (int .Values.containerPort)) }}
{{- if .Values.metrics.enabled }}
{{- $_ := set $server "metrics_listen" (printf "%s:%d" .Values.listenAddress (int .Values.metrics.port)) }}
{{- end }}
{{- $_ := set $config "server" $server }}
{{- if .Values.redis.enabled }}
{{- $redis := get $session "redis" | default dict }}
{{- if .Values.redis.url }}
{{- $_ := set $redis "url" .Values.redis.url }}
{{- end }}
{{- if not (or (hasKey $redis "url") (hasKey $redis "sentinel") (hasKey $redis "cluster")) }}
{{- fail "redis.enabled needs redis.url (or config.session.redis.sentinel / .cluster)" }}
{{- end }}
{{- $_ := set $session "store" "redis" }}
{{- $_ := set $session "redis" $redis }}
{{- $_ := set $config "session" $session }}
{{- end }}
{{- regexReplaceAll `(?m)^(\s*[A-Za-z0-9_-]+ = -?[0-9]+)\.0$` (toToml $config) "${1}" }}
{{- end }}
