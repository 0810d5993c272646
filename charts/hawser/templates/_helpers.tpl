{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "hawser.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name; suffixes (-gateway, -operator) are added by callers. */}}
{{- define "hawser.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else if contains (include "hawser.name" .) .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "hawser.name" .) | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "hawser.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "hawser.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels; call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "hawser.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hawser.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "hawser.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "hawser.gatewayServiceAccount" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (printf "%s-gateway" (include "hawser.fullname" .)) .Values.serviceAccount.gatewayName -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.gatewayName -}}
{{- end -}}
{{- end -}}

{{- define "hawser.operatorServiceAccount" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (printf "%s-operator" (include "hawser.fullname" .)) .Values.serviceAccount.operatorName -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.operatorName -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding DATABASE_URL, HAWSER_ENCRYPTION_KEYS and HAWSER_ADMIN_TOKEN. */}}
{{- define "hawser.secretName" -}}
{{- default (printf "%s-secrets" (include "hawser.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* Environment both binaries read from the Secret. */}}
{{- define "hawser.secretEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "hawser.secretName" . }}
      key: {{ .Values.secrets.keys.databaseUrl }}
- name: HAWSER_ENCRYPTION_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ include "hawser.secretName" . }}
      key: {{ .Values.secrets.keys.encryptionKeys }}
{{- end -}}

{{/*
Accepted Host values: the values' list, or the Service's in-cluster names, loopback
(kubectl port-forward) and the host of publicUrl.
*/}}
{{- define "hawser.allowedHosts" -}}
{{- if .Values.gateway.allowedHosts -}}
{{- join "," .Values.gateway.allowedHosts -}}
{{- else -}}
{{- $svc := printf "%s-gateway" (include "hawser.fullname" .) -}}
{{- $ns := .Release.Namespace -}}
{{- $hosts := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) "localhost" "127.0.0.1" -}}
{{- with .Values.gateway.publicUrl -}}
{{- $hosts = append $hosts (urlParse .).host -}}
{{- end -}}
{{- join "," $hosts -}}
{{- end -}}
{{- end -}}

{{- define "hawser.allowedOrigins" -}}
{{- if .Values.gateway.allowedOrigins -}}
{{- join "," .Values.gateway.allowedOrigins -}}
{{- else if .Values.gateway.publicUrl -}}
{{- $u := urlParse .Values.gateway.publicUrl -}}
{{- printf "%s://%s" $u.scheme $u.host -}}
{{- end -}}
{{- end -}}
