{{/* Names and labels. */}}

{{- define "mesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mesh.fullname" -}}
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

{{- define "mesh.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mesh.labels" -}}
helm.sh/chart: {{ include "mesh.chart" . }}
{{ include "mesh.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mesh
{{- end -}}

{{- define "mesh.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mesh.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "mesh.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Secret holding the cluster secret: the user's, or the chart's. */}}
{{- define "mesh.secretName" -}}
{{- default (printf "%s-secret" (include "mesh.fullname" .)) .Values.secret.existingSecret -}}
{{- end -}}

{{/* Paths inside the meshd container. */}}
{{- define "mesh.socketPath" -}}/run/mesh/meshd.sock{{- end -}}
{{- define "mesh.nodeConfigDir" -}}/etc/mesh/nodes{{- end -}}
{{- define "mesh.secretDir" -}}/etc/mesh/secret{{- end -}}

{{/* The search domain mesh-cni hands to pods: the DNS zone without its final dot. */}}
{{- define "mesh.searchDomain" -}}
{{- trimSuffix "." .Values.mesh.dns.zone -}}
{{- end -}}

{{/*
IPv4 arithmetic for the checks below (Helm has no CIDR functions).
"mesh.cidr" turns "a.b.c.d/p" into "NET,SIZE,PREFIX": the address as an integer, the number
of addresses (2^(32-p)) and the prefix length. values.schema.json has checked the syntax.
*/}}
{{- define "mesh.cidr" -}}
{{- $parts := splitList "/" . -}}
{{- $o := splitList "." (index $parts 0) -}}
{{- $net := add (mul (atoi (index $o 0)) 16777216) (mul (atoi (index $o 1)) 65536) (mul (atoi (index $o 2)) 256) (atoi (index $o 3)) -}}
{{- $prefix := atoi (index $parts 1) -}}
{{- $size := 1 -}}
{{- range until (sub 32 $prefix | int) -}}
{{- $size = mul $size 2 -}}
{{- end -}}
{{- printf "%d,%d,%d" $net $size $prefix -}}
{{- end -}}

{{/* "mesh.ipv4" turns an integer back into a dotted address. */}}
{{- define "mesh.ipv4" -}}
{{- $n := int64 . -}}
{{- printf "%d.%d.%d.%d" (div $n 16777216) (mod (div $n 65536) 256) (mod (div $n 256) 256) (mod $n 256) -}}
{{- end -}}

{{/*
"mesh.validate": the checks values.schema.json cannot express, with the value to fix in
each message. Included by the DaemonSet and the node ConfigMap, so `helm template`,
`helm install` and `helm upgrade` all stop on them.
*/}}
{{- define "mesh.validate" -}}
{{- $r := splitList "," (include "mesh.cidr" .Values.mesh.range) -}}
{{- $rnet := atoi (index $r 0) -}}
{{- $rsize := atoi (index $r 1) -}}
{{- if mod $rnet $rsize -}}
{{- fail (printf "mesh.range %s has host bits set (meshd refuses it): give the network address" .Values.mesh.range) -}}
{{- end -}}
{{- $seen := list -}}
{{- range $node, $block := .Values.mesh.nodeBlocks -}}
{{- if gt (len $node) 63 -}}
{{- fail (printf "mesh.nodeBlocks: node name %s is longer than 63 bytes, the longest name meshd announces" $node) -}}
{{- end -}}
{{- $b := splitList "," (include "mesh.cidr" $block) -}}
{{- $net := atoi (index $b 0) -}}
{{- $size := atoi (index $b 1) -}}
{{- if mod $net $size -}}
{{- fail (printf "mesh.nodeBlocks.%s: %s has host bits set (meshd refuses it): give the network address" $node $block) -}}
{{- end -}}
{{- if or (lt $net $rnet) (gt (add $net $size) (add $rnet $rsize)) -}}
{{- fail (printf "mesh.nodeBlocks.%s: %s is not inside mesh.range %s" $node $block $.Values.mesh.range) -}}
{{- end -}}
{{- range $other := $seen -}}
{{- $o := splitList "," $other -}}
{{- $onet := atoi (index $o 0) -}}
{{- $osize := atoi (index $o 1) -}}
{{- if and (lt $net (add $onet $osize)) (lt $onet (add $net $size)) -}}
{{- fail (printf "mesh.nodeBlocks.%s: %s overlaps the block of node %s (%s): every node needs a block of its own" $node $block (index $o 2) (index $o 3)) -}}
{{- end -}}
{{- end -}}
{{- $seen = append $seen (printf "%d,%d,%s,%s" $net $size $node $block) -}}
{{- end -}}
{{- if not .Values.mesh.nodeBlocks -}}
{{- if not .Values.mesh.kube.enabled -}}
{{- fail "mesh.nodeBlocks is empty (automatic IPAM) and mesh.kube.enabled is false: nothing would decide which node founds the address ring; set mesh.kube.enabled=true (the oldest Node's meshd founds it) or give every node a block in mesh.nodeBlocks" -}}
{{- end -}}
{{- if and .Values.mesh.dns.enabled (ne (int .Values.mesh.dns.port) 53) -}}
{{- fail (printf "mesh.dns.port %v needs mesh.nodeBlocks: with automatic IPAM meshd serves DNS on port 53 of the gateway of the node's first block (not known in advance); use port 53 or give every node a block" .Values.mesh.dns.port) -}}
{{- end -}}
{{- if lt (int .Values.mesh.blockSize) (atoi (index (splitList "/" .Values.mesh.range) 1)) -}}
{{- fail (printf "mesh.blockSize %v is larger than mesh.range %s: a block is a prefix length between the range's and 30" .Values.mesh.blockSize .Values.mesh.range) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.metrics.service.enabled (not .Values.metrics.enabled) -}}
{{- fail "metrics.service.enabled needs metrics.enabled: true" -}}
{{- end -}}
{{- if and .Values.metrics.service.enabled (eq .Values.metrics.listen "loopback") -}}
{{- fail "metrics.service.enabled needs metrics.listen \"node\" or \"any\": with \"loopback\" meshd serves metrics on 127.0.0.1 only, which the Service cannot reach" -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) -}}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled: true (the ServiceMonitor selects that Service)" -}}
{{- end -}}
{{- if and (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) .Values.rbac.create -}}
{{- fail "rbac.create with serviceAccount.create=false needs serviceAccount.name: the ClusterRoleBinding would bind the namespace's default ServiceAccount" -}}
{{- end -}}
{{- end -}}

{{/*
"mesh.nodeConfig": the TOML file of one node (meshd --config), from a dict with "root" and
"block". Only keys meshd's config file has (router/daemon/src/config.rs): `block`, and
`dns` because its address is the node's gateway (the block's first address).
*/}}
{{- define "mesh.nodeConfig" -}}
{{- $v := .root.Values -}}
{{- $b := splitList "," (include "mesh.cidr" .block) -}}
block = {{ .block | quote }}
{{- if $v.mesh.dns.enabled }}
dns = "{{ include "mesh.ipv4" (add (atoi (index $b 0)) 1) }}:{{ $v.mesh.dns.port }}"
{{- else }}
dns = "off"
{{- end }}
{{- end -}}

{{/* The conflist written to the node's CNI configuration directory (docs/cni.md). */}}
{{- define "mesh.conflist" -}}
{{- $mesh := dict "type" "mesh-cni" "socket" (printf "%s/meshd.sock" (trimSuffix "/" .Values.hostPaths.run)) "domain" (include "mesh.searchDomain" .) -}}
{{- if .Values.cni.hairpin -}}
{{- $_ := set $mesh "hairpin" true -}}
{{- end -}}
{{- $plugins := list $mesh -}}
{{- if .Values.cni.portmap -}}
{{- $plugins = append $plugins (dict "type" "portmap" "capabilities" (dict "portMappings" true)) -}}
{{- end -}}
{{- dict "cniVersion" .Values.cni.version "name" .Values.cni.networkName "plugins" $plugins | toPrettyJson -}}
{{- end -}}

{{/* meshd's metrics address (MESH_METRICS). */}}
{{- define "mesh.metricsAddr" -}}
{{- if not .Values.metrics.enabled -}}
off
{{- else if eq .Values.metrics.listen "node" -}}
$(K8S_NODE_IP):{{ .Values.metrics.port }}
{{- else if eq .Values.metrics.listen "any" -}}
0.0.0.0:{{ .Values.metrics.port }}
{{- else -}}
127.0.0.1:{{ .Values.metrics.port }}
{{- end -}}
{{- end -}}
