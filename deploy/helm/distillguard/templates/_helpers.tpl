{{/* Name of the release's objects. */}}
{{- define "distillguard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "distillguard.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "distillguard.labels" -}}
{{ include "distillguard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "distillguard.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The Secret with store-url, admin-token, upstream-api-key. */}}
{{- define "distillguard.envSecret" -}}
{{- .Values.existingSecret | default (printf "%s-env" (include "distillguard.fullname" .)) -}}
{{- end -}}

{{- define "distillguard.keyringSecret" -}}
{{- .Values.keyring.existingSecret | default (printf "%s-keyring" (include "distillguard.fullname" .)) -}}
{{- end -}}

{{/* Replicas the deployment may run: the HPA's maximum, or replicaCount. */}}
{{- define "distillguard.maxReplicas" -}}
{{- if .Values.autoscaling.enabled -}}{{ .Values.autoscaling.maxReplicas }}{{- else -}}{{ .Values.replicaCount }}{{- end -}}
{{- end -}}

{{/* Environment shared by the gateway and the migration Job. */}}
{{- define "distillguard.env" -}}
- name: DISTILLGUARD_CONFIG
  value: /etc/distillguard/distillguard.toml
- name: DISTILLGUARD_HOME
  value: /var/lib/distillguard
- name: DISTILLGUARD_KEYRING__PATH
  value: /var/lib/distillguard/keys/keyring.json
- name: DISTILLGUARD_GATEWAY__REPLICAS
  value: {{ include "distillguard.maxReplicas" . | quote }}
- name: DISTILLGUARD_STORE__URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.store.existingSecret | default (include "distillguard.envSecret" .) }}
      key: store-url
- name: DISTILLGUARD_GATEWAY__ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "distillguard.envSecret" . }}
      key: admin-token
      optional: true
- name: DISTILLGUARD_GATEWAY__UPSTREAM_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "distillguard.envSecret" . }}
      key: upstream-api-key
      optional: true
{{- if .Values.tracing.otlpEndpoint }}
- name: OTEL_TRACES_EXPORTER
  value: otlp
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.tracing.otlpEndpoint | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ include "distillguard.fullname" . | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "distillguard.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "distillguard.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* The keyring Secret is readable by the pod's group (fsGroup); the keyring refuses a file
that others may read, so an init container copies it, mode 0600, into an emptyDir. */}}
{{- define "distillguard.keyringInit" -}}
- name: keyring
  image: {{ include "distillguard.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: ["install", "-m", "0600", "/etc/distillguard/keyring-secret/keyring.json", "/var/lib/distillguard/keys/keyring.json"]
  securityContext:
    {{- include "distillguard.containerSecurityContext" . | nindent 4 }}
  volumeMounts:
    - name: keyring-secret
      mountPath: /etc/distillguard/keyring-secret
      readOnly: true
    - name: keys
      mountPath: /var/lib/distillguard/keys
{{- end -}}

{{- define "distillguard.volumes" -}}
- name: config
  configMap:
    name: {{ include "distillguard.fullname" . }}
- name: keyring-secret
  secret:
    secretName: {{ include "distillguard.keyringSecret" . }}
    defaultMode: 0440
- name: keys
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
- name: home
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "distillguard.volumeMounts" -}}
- name: config
  mountPath: /etc/distillguard/distillguard.toml
  subPath: distillguard.toml
  readOnly: true
- name: keys
  mountPath: /var/lib/distillguard/keys
- name: home
  mountPath: /var/lib/distillguard
- name: tmp
  mountPath: /tmp
{{- end -}}
