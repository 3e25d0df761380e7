{{/* The chart name. */}}
{{- define "riposte.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The full name: the release name, with the chart name unless it contains it. */}}
{{- define "riposte.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "riposte.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* What selects the runner pods. */}}
{{- define "riposte.selectorLabels" -}}
app.kubernetes.io/name: {{ include "riposte.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The labels of every object. */}}
{{- define "riposte.labels" -}}
helm.sh/chart: {{ include "riposte.chart" . }}
{{ include "riposte.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: riposte
{{- with .Values.customLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "riposte.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "riposte.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "riposte.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.registry -}}
{{- printf "%s/%s:%s" .Values.image.registry .Values.image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
The Kubernetes capabilities to grant, sorted, one per line: those the response's catalog playbooks declare
(files/capabilities.yaml) and rbac.extraCapabilities. A function deployed from a playbook this chart does not
know is refused: name its capabilities in rbac.extraCapabilities and its function's `capabilities`.
*/}}
{{- define "riposte.capabilities" -}}
{{- $catalog := .Files.Get "files/capabilities.yaml" | fromYaml -}}
{{- $caps := list -}}
{{- range .Values.response.functions -}}
{{- if .playbook -}}
{{- if not (hasKey $catalog.playbooks .playbook) -}}
{{- fail (printf "response.functions %s: playbook %s is not in the catalog this chart knows (files/capabilities.yaml); give its Kubernetes capabilities in rbac.extraCapabilities" .name .playbook) -}}
{{- end -}}
{{- $caps = concat $caps (get $catalog.playbooks .playbook) -}}
{{- end -}}
{{- end -}}
{{- $caps = concat $caps $.Values.rbac.extraCapabilities -}}
{{- range $caps | uniq | sortAlpha -}}
{{- if hasPrefix "kubernetes." . }}
{{- if not (hasKey $catalog.capabilities .) -}}
{{- fail (printf "capability %s is not one riposte has (files/capabilities.yaml lists them)" .) -}}
{{- end }}
{{ . }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The environment every riposte container of the chart gets: NATS, its credentials, the settings key. */}}
{{- define "riposte.env" -}}
- name: RIPOSTE_NATS_URL
  value: {{ .Values.config.nats.url | quote }}
- name: RIPOSTE_LOG_FORMAT
  value: {{ .Values.config.logFormat | quote }}
- name: RIPOSTE_SETTINGS_KEY_FILE
  value: /etc/riposte/key/{{ .Values.config.settingsKey.key }}
{{- with .Values.config.nats }}
{{- if .user }}
- name: RIPOSTE_NATS_USER
  value: {{ .user | quote }}
{{- end }}
{{- range $env, $key := dict "RIPOSTE_NATS_CREDS" .credsKey "RIPOSTE_NATS_NKEY" .nkeyKey "RIPOSTE_NATS_PASSWORD_FILE" .passwordKey "RIPOSTE_NATS_TOKEN_FILE" .tokenKey "RIPOSTE_NATS_CA" .caKey "RIPOSTE_NATS_CERT" .certKey "RIPOSTE_NATS_KEY" .keyKey }}
{{- if $key }}
- name: {{ $env }}
  value: /etc/riposte/nats/{{ $key }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The volume mounts every riposte container of the chart gets. */}}
{{- define "riposte.mounts" -}}
- name: settings-key
  mountPath: /etc/riposte/key
  readOnly: true
{{- if .Values.config.nats.existingSecret }}
- name: nats
  mountPath: /etc/riposte/nats
  readOnly: true
{{- end }}
- name: state
  mountPath: /var/lib/riposte
- name: tmp
  mountPath: /tmp
{{- end -}}
