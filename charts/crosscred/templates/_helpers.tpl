{{- define "crosscred.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}

{{- define "crosscred.initImage" -}}
{{ .Values.nodeAgent.initImage.repository }}:{{ .Values.nodeAgent.initImage.tag | default .Values.image.tag }}
{{- end -}}

{{- define "crosscred.labels" -}}
app.kubernetes.io/part-of: crosscred
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
