#!/usr/bin/env python3
"""Run what `helm template` rendered, with the real binary.

    run-rendered.py RENDERED.yaml NAME WORKDIR      (called by helm/validate.sh)

For each chorus workload in the manifests (the gateway Deployment; the presence StatefulSet
when rendered) this script

1. rebuilds the pod's view of the filesystem in WORKDIR/NAME-<component>-root: the file named by
   `--config` in the container's args comes from the ConfigMap mounted there, and every
   `*_pem_file` of the config must lie on a mounted Secret/ConfigMap volume (for a volume with
   `items`, under one of the item paths) — the script writes a stand-in certificate, CA or key
   generated with openssl at that path and points the key there (`CHORUS_<KEY>`);
2. runs `chorus checkconfig` (`--strict` for the gateway) with the config and the pod's
   environment — every `secretKeyRef` replaced by a stand-in value;
3. starts the binary (`$CHORUS_BIN`) with the container's args, the same environment, and
   every listener moved to a free loopback port (`CHORUS_HTTP_SERVER_PORT`, …): container port
   → test port is the mapping every later check goes through, and a container port that no
   listener binds is an error;
4. requests every probe of the container (startup, liveness, readiness: httpGet, tcpSocket,
   grpc) on the mapped port: liveness and startup must succeed as the kubelet counts success
   (HTTP 200-399, gRPC SERVING); readiness may also be "not ready" (HTTP 503, gRPC NOT_SERVING)
   when the config depends on Redis or the presence service, which are unreachable here. A 404
   or an unknown gRPC service means the probe points at the wrong listener or path;
5. follows every ServiceMonitor endpoint (Service port name → targetPort → container port →
   test port) and every Service's targetPort: scrapes answer 200 with `chorus_build_info`,
   Service ports accept connections;
6. stops the processes: SIGTERM, a bounded wait, then SIGKILL. They are also stopped when this
   script fails, is interrupted or is terminated, and die with it if it is killed.

Every wait is bounded. Exits 1 with "NAME: <check>: <what>" on the first failure.
"""
import ctypes
import hashlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time

import yaml

START_TIMEOUT = 20.0  # s, until every listener of a started process accepts connections
PROBE_DEADLINE = 8.0  # s, retrying a probe that is not yet answered as expected
STOP_TIMEOUT = 10.0  # s, between SIGTERM and SIGKILL
REQUEST_TIMEOUT_MIN = 5.0  # s, a debug build on a busy CI machine is slower than a pod

if len(sys.argv) != 4:
    sys.exit("usage: run-rendered.py RENDERED.yaml NAME WORKDIR")
RENDERED, NAME, WORK = sys.argv[1:]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHORUS_BIN = os.environ.get("CHORUS_BIN") or os.path.join(ROOT, "target", "debug", "chorus")


class Failure(Exception):
    pass


def log(msg):
    print(f"  {NAME}: {msg}", file=sys.stderr, flush=True)


# Listeners of each command: (port key, default port, enabled(cfg) or None, address key).
# Defaults as documented in docs/config.md.
LISTENERS = {
    "serve": [
        ("http_server.port", 8000, None, "http_server.address"),
        ("http_server.internal_port", 0, None, "http_server.internal_address"),
        ("grpc_api.port", 10000, lambda get: get("grpc_api.enabled", False), "grpc_api.address"),
    ],
    "presence": [
        ("presence_server.port", 10100, None, "presence_server.address"),
        ("presence_server.metrics_port", 10101, None, "presence_server.address"),
    ],
}


INHERITED_ADDRESSES = {"http_server.internal_address", "grpc_api.address"}


def env_name(key):
    return "CHORUS_" + key.upper().replace(".", "_")


def dig(cfg, key, default=None):
    cur = cfg
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur


def effective(cfg, env, key, default):
    """A key's value as the binary sees it: CHORUS_* variable > config file > default."""
    if env_name(key) in env:
        raw = env[env_name(key)]
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return dig(cfg, key, default)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pem_files(cfg, prefix=""):
    """Every non-empty `*_pem_file` key of the config: {dotted key: path}."""
    out = {}
    for k, v in (cfg or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(pem_files(v, key + "."))
        elif k.endswith("_pem_file") and isinstance(v, str) and v:
            out[key] = v
    return out


# ---------------------------------------------------------------- stand-in certificates
_PEMS = {}


def pems():
    """A CA and a leaf certificate (localhost, 127.0.0.1) signed by it, made once per run."""
    if _PEMS:
        return _PEMS
    d = os.path.join(WORK, "pki")
    os.makedirs(d, exist_ok=True)
    p = {n: os.path.join(d, n) for n in ("ca.crt", "ca.key", "tls.crt", "tls.key", "tls.csr", "san.ext")}
    if not os.path.exists(p["tls.crt"]):
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        open(p["san.ext"], "w").write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        for cmd in (
            ["openssl", "req", "-x509", *ec, "-keyout", p["ca.key"], "-out", p["ca.crt"],
             "-subj", "/CN=chorus-helm-validate-ca", "-days", "2"],
            ["openssl", "req", *ec, "-keyout", p["tls.key"], "-out", p["tls.csr"], "-subj", "/CN=localhost"],
            ["openssl", "x509", "-req", "-in", p["tls.csr"], "-CA", p["ca.crt"], "-CAkey", p["ca.key"],
             "-CAcreateserial", "-out", p["tls.crt"], "-days", "2", "-extfile", p["san.ext"]],
        ):
            r = subprocess.run(cmd, capture_output=True, timeout=30)
            if r.returncode != 0:
                raise Failure(f"openssl failed: {' '.join(cmd)}: {r.stderr.decode(errors='replace')}")
    _PEMS.update(p)
    return p


def stand_in_pem(key):
    """The generated file that stands in for config key `key`'s PEM file."""
    leaf = key.rsplit(".", 1)[-1]
    if "ca" in leaf.split("_"):
        return open(pems()["ca.crt"]).read()
    if leaf == "key_pem_file":
        return open(pems()["tls.key"]).read()
    return open(pems()["tls.crt"]).read()


# ---------------------------------------------------------------- manifests
docs = [d for d in yaml.safe_load_all(open(RENDERED)) if d]


def of_kind(kind):
    return [d for d in docs if d["kind"] == kind]


def component_of(d):
    return d["metadata"].get("labels", {}).get("app.kubernetes.io/component")


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def mounted_file(pod, ctr, path, what):
    """(volume, key) that provides file `path` in the container, or Failure naming `what`."""
    mounts = sorted(ctr.get("volumeMounts", []), key=lambda m: len(m["mountPath"]), reverse=True)
    for m in mounts:
        mp = m["mountPath"].rstrip("/")
        if m.get("subPath"):
            if path != mp:
                continue
            rel = m["subPath"]
        elif path.startswith(mp + "/"):
            rel = path[len(mp) + 1:]
        else:
            continue
        vol = next((v for v in pod.get("volumes", []) if v["name"] == m["name"]), None)
        if vol is None:
            raise Failure(f"{what} {path}: volumeMount {m['name']} has no volume")
        for kind in ("secret", "configMap"):
            if kind in vol:
                items = vol[kind].get("items")
                if items is None:
                    return vol, rel
                for it in items:
                    if it["path"] == rel:
                        return vol, it["key"]
                raise Failure(f"{what} {path}: volume {vol['name']} ({kind} "
                              f"{vol[kind].get('secretName') or vol[kind].get('name')}) projects only "
                              f"{[it['path'] for it in items]} into {mp}, not {rel}")
        if "projected" in vol:
            return vol, rel
        raise Failure(f"{what} {path}: mounted from volume {vol['name']}, which is neither a Secret "
                      f"nor a ConfigMap: nothing puts the file there")
    raise Failure(f"{what} {path}: no volume is mounted there "
                  f"(mounts: {[m['mountPath'] for m in ctr.get('volumeMounts', [])]})")


def pod_env(ctr):
    """The container's environment: literal values, and a stand-in per secret key."""
    env = {}
    for e in ctr.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
            continue
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            # 64 hex characters: long enough for every key chorus checks the length of, and
            # the same for every pod that reads the same key (shared keys must match).
            env[e["name"]] = hashlib.sha256(f"{ref['name']}/{ref['key']}".encode()).hexdigest()
    return env


class Workload:
    """One chorus container of a rendered workload, prepared to run outside the cluster."""

    def __init__(self, component, obj):
        self.component, self.obj = component, obj
        self.pod = obj["spec"]["template"]["spec"]
        self.ctr = self.pod["containers"][0]
        self.what = f"{obj['kind']} {obj['metadata']['name']}"
        args = list(self.ctr.get("args", []))
        if not args or args[0] not in LISTENERS or "--config" not in args[:-1]:
            raise Failure(f"{self.what}: args {args} are not `serve|presence --config FILE`")
        self.command = args[0]
        i = args.index("--config") + 1
        self.root = os.path.join(WORK, f"{NAME}-{component}-root")
        # The config file, from the ConfigMap mounted where --config points.
        vol, key = mounted_file(self.pod, self.ctr, args[i], f"{self.what}: --config")
        if "configMap" not in vol:
            raise Failure(f"{self.what}: --config {args[i]} is not on a ConfigMap volume")
        cm_name = vol["configMap"]["name"]
        cm = next((c for c in of_kind("ConfigMap") if c["metadata"]["name"] == cm_name), None)
        if cm is None or key not in cm.get("data", {}):
            raise Failure(f"{self.what}: --config {args[i]}: ConfigMap {cm_name} with key {key} is not rendered")
        self.config_path = self.stand_in(args[i], cm["data"][key])
        self.cfg = json.loads(cm["data"][key])
        args[i] = self.config_path
        self.args = args
        self.env = pod_env(self.ctr)
        # Files the config names: on a mounted Secret/ConfigMap, replaced by generated PEMs.
        for cfg_key, path in pem_files(self.cfg).items():
            vol, _ = mounted_file(self.pod, self.ctr, path, f"{self.what}: config {cfg_key}")
            self.env[env_name(cfg_key)] = self.stand_in(path, stand_in_pem(cfg_key))
        self.ports = {}  # container port → test port
        self.proc = None

    def stand_in(self, path, content):
        local = os.path.join(self.root, path.lstrip("/"))
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with open(local, "w") as f:
            f.write(content)
        return local

    def get(self, key, default=None):
        return effective(self.cfg, self.env, key, default)

    def checkconfig(self):
        strict = ["--strict"] if self.component == "gateway" else []
        # A presence replica's config has no gateway keys, so gateway warnings (no API key on a
        # non-loopback address) do not apply; unknown keys and variables still must not appear.
        env = {"PATH": os.environ["PATH"], **self.env}
        r = subprocess.run([CHORUS_BIN, "checkconfig", *strict, "--config", self.config_path],
                           env=env, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        err = r.stderr.decode(errors="replace").strip()
        if r.returncode != 0:
            raise Failure(f"checkconfig {' '.join(strict)}: the rendered {self.component} config "
                          f"fails with the pod's environment: {err}")
        if "unknown" in err:
            raise Failure(f"checkconfig: the rendered {self.component} config or environment has "
                          f"unknown keys: {err}")

    def start(self):
        env = {"PATH": os.environ["PATH"], **self.env}
        seen = set()
        for port_key, default, enabled, addr_key in LISTENERS[self.command]:
            if enabled is not None and not enabled(self.get):
                continue
            port = int(self.get(port_key, default) or 0)
            if port == 0 and port_key == "http_server.internal_port":
                continue
            test = free_port()
            env[env_name(port_key)] = str(test)
            self.ports[port] = test
            # Bind loopback only. An empty internal_address / grpc_api.address means "the same
            # as http_server.address", so those are left alone unless the config sets them.
            if addr_key not in seen:
                seen.add(addr_key)
                if addr_key not in INHERITED_ADDRESSES or self.get(addr_key, ""):
                    env[env_name(addr_key)] = "127.0.0.1"
        mapping = ", ".join(f"{c}→{t}" for c, t in self.ports.items())
        for p in self.ctr.get("ports", []):
            if p["containerPort"] not in self.ports:
                raise Failure(f"{self.what}: container port {p.get('name', '')} ({p['containerPort']}) "
                              f"is bound by no listener of the config (listeners: {sorted(self.ports)})")
        logf = os.path.join(WORK, f"{NAME}-{self.component}.log")
        self.log_path = logf
        self.proc = Proc([CHORUS_BIN, *self.args], env, logf)
        log(f"{self.component}: started `chorus {self.command}` (pid {self.proc.p.pid}), ports {mapping}")
        deadline = time.monotonic() + START_TIMEOUT
        pending = set(self.ports.values())
        while pending:
            if self.proc.p.poll() is not None:
                raise Failure(f"{self.component}: `chorus {self.command}` exited with "
                              f"{self.proc.p.returncode} at start: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise Failure(f"{self.component}: ports {sorted(pending)} not listening after "
                              f"{START_TIMEOUT:.0f}s: {self.log_tail()}")
            for t in list(pending):
                try:
                    socket.create_connection(("127.0.0.1", t), timeout=0.5).close()
                    pending.discard(t)
                except OSError:
                    pass
            time.sleep(0.05)

    def log_tail(self, n=15):
        try:
            lines = open(self.log_path, errors="replace").read().splitlines()
        except OSError:
            return "(no output)"
        return "\n    " + "\n    ".join(lines[-n:])

    def container_port(self, port, where):
        """A probe's or Service's port (name or number) → the container port number."""
        if isinstance(port, int):
            return port
        if isinstance(port, str) and port.isdigit():
            return int(port)
        named = {p.get("name"): p["containerPort"] for p in self.ctr.get("ports", [])}
        if port not in named:
            raise Failure(f"{where}: port {port!r} is not a named port of {self.what} "
                          f"(named ports: {sorted(k for k in named if k)})")
        return named[port]

    def test_port(self, port, where):
        c = self.container_port(port, where)
        if c not in self.ports:
            raise Failure(f"{where}: port {port} ({c}) is not a port chorus listens on with this "
                          f"config (listeners: {sorted(self.ports)})")
        return c, self.ports[c]

    def depends_on_unreachable(self):
        """Redis or the presence service: configured, and unreachable from this test."""
        return self.get("engine.type", "memory") == "redis" or bool(self.get("presence.endpoints", []))


# ---------------------------------------------------------------- processes
PROCS = []


def _die_with_parent():
    # If this script is SIGKILLed (a CI timeout), the kernel kills the server too.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Proc:
    def __init__(self, argv, env, log_path):
        self.log = open(log_path, "wb")
        self.p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                  stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        PROCS.append(self)

    def stop(self):
        """SIGTERM, up to STOP_TIMEOUT, then SIGKILL. Returns (seconds, killed)."""
        t0 = time.monotonic()
        killed = False
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
                killed = True
        self.log.close()
        return time.monotonic() - t0, killed


def stop_all():
    while PROCS:
        PROCS.pop().stop()


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


for _s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_s, _on_signal)


# ---------------------------------------------------------------- requests
def http_get(port, path, scheme="HTTP", headers=None, timeout=REQUEST_TIMEOUT_MIN):
    """(status, body) of GET path on 127.0.0.1:port; an OSError when nothing answers in
    HTTP (an HTTP request to a TLS listener, or the reverse, included)."""
    if scheme.upper() == "HTTPS":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # kubelet does not verify either
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read(1 << 20).decode(errors="replace")
    except http.client.HTTPException as e:
        # e.g. BadStatusLine('\x15\x03\x03…'): a TLS alert, the listener expects TLS.
        raise OSError(f"not an HTTP answer: {e!r}") from e
    finally:
        conn.close()


GRPC_SERVING, GRPC_NOT_SERVING = 1, 2


def grpc_health(port, service, timeout):
    """grpc.health.v1.Health/Check over h2c with curl: (grpc-status, serving status or None)."""
    msg = b"" if not service else b"\x0a" + bytes([len(service)]) + service.encode()
    req = os.path.join(WORK, f"{NAME}-grpc-req.bin")
    resp = os.path.join(WORK, f"{NAME}-grpc-resp.bin")
    with open(req, "wb") as f:
        f.write(b"\x00" + len(msg).to_bytes(4, "big") + msg)
    if os.path.exists(resp):
        os.unlink(resp)
    r = subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", "-m", str(int(timeout)), "-X", "POST",
         "-H", "content-type: application/grpc", "-H", "te: trailers", "--data-binary", f"@{req}",
         "-D", "-", "-o", resp, f"http://127.0.0.1:{port}/grpc.health.v1.Health/Check"],
        capture_output=True, timeout=timeout + 5)
    if r.returncode != 0:
        raise OSError(f"curl: {r.stderr.decode(errors='replace').strip()}")
    # Headers and trailers (curl prints both): the last grpc-status wins.
    status = None
    for line in r.stdout.decode(errors="replace").splitlines():
        if line.lower().startswith("grpc-status:"):
            status = int(line.split(":", 1)[1])
    body = open(resp, "rb").read() if os.path.exists(resp) else b""
    serving = None
    if len(body) >= 7 and body[5] == 0x08:
        serving = body[6]
    elif len(body) == 5:
        serving = 0  # UNKNOWN, the default value, encodes as an empty message
    return status, serving


def probe_http(w, where, g, timeout, not_ready_ok):
    c, t = w.test_port(g["port"], where)
    path = g.get("path", "/")
    headers = {h["name"]: h["value"] for h in g.get("httpHeaders", [])}
    scheme = g.get("scheme", "HTTP")
    desc = f"{scheme} GET {path} on port {g['port']} ({c} → 127.0.0.1:{t})"
    try:
        status, _ = http_get(t, path, scheme, headers, timeout)
    except OSError as e:
        return desc, False, f"no answer ({e})"
    if status == 404:
        raise Failure(f"{where}: {desc} answered 404: the probe points at a listener that does "
                      f"not serve {path}")
    return desc, 200 <= status < 400 or (not_ready_ok and status == 503), status


def probe_tcp(w, where, p, timeout, _not_ready_ok):
    c, t = w.test_port(p["port"], where)
    desc = f"TCP connect to port {p['port']} ({c} → 127.0.0.1:{t})"
    try:
        socket.create_connection(("127.0.0.1", t), timeout=timeout).close()
        return desc, True, "connected"
    except OSError as e:
        return desc, False, str(e)


def probe_grpc(w, where, g, timeout, not_ready_ok):
    c, t = w.test_port(g["port"], where)
    service = g.get("service", "")
    desc = f"gRPC health check of service {service!r} on port {c} (→ 127.0.0.1:{t})"
    try:
        status, serving = grpc_health(t, service, timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return desc, False, f"no answer ({e})"
    if status == 5:
        raise Failure(f"{where}: {desc}: NOT_FOUND: the server does not know this service "
                      f"(wrong probe service name or port)")
    ok = status == 0 and (serving == GRPC_SERVING or (not_ready_ok and serving == GRPC_NOT_SERVING))
    return desc, ok, f"grpc-status {status}, serving status {serving}"


PROBES = {"httpGet": probe_http, "tcpSocket": probe_tcp, "grpc": probe_grpc}


def check_probe(w, kind, probe):
    where = f"{w.what} {kind}"
    handler = next((h for h in PROBES if h in probe), None)
    if handler is None:
        if "exec" in probe:
            log(f"{w.component}: {kind}: exec probe {probe['exec']} not run outside the container")
            return
        raise Failure(f"{where}: unknown probe handler {sorted(probe)}")
    timeout = max(float(probe.get("timeoutSeconds", 1)), REQUEST_TIMEOUT_MIN)
    # Success as the kubelet counts it; for readiness also "not ready": an HTTP 503 when the
    # config depends on Redis or the presence service (unreachable here), and a presence
    # replica's NOT_SERVING (its warm-up lasts a lease).
    if handler == "grpc":
        not_ready_ok, expect = kind == "readinessProbe", "SERVING"
        if not_ready_ok:
            expect += " or NOT_SERVING"
    else:
        not_ready_ok = kind == "readinessProbe" and w.depends_on_unreachable()
        expect = "200-399" + (" or 503 (Redis/presence unreachable here)" if not_ready_ok else "")
    deadline = time.monotonic() + PROBE_DEADLINE
    while True:
        desc, ok, result = PROBES[handler](w, where, probe[handler], timeout, not_ready_ok)
        if ok:
            log(f"{w.component}: {kind}: {desc} → {result}")
            return
        if time.monotonic() > deadline or w.proc.p.poll() is not None:
            raise Failure(f"{where}: {desc} → {result}, expected {expect}{w.log_tail()}")
        time.sleep(0.2)


def backing(service):
    """The running workload a Service selects (None when it selects none of them)."""
    for w in WORKLOADS:
        if selects(service["spec"].get("selector", {}), w.obj["spec"]["template"]["metadata"].get("labels", {})):
            return w
    return None


def check_services():
    for svc in of_kind("Service"):
        w = backing(svc)
        if w is None:
            raise Failure(f"Service {svc['metadata']['name']} selects no rendered chorus workload")
        for p in svc["spec"]["ports"]:
            where = f"Service {svc['metadata']['name']} port {p.get('name', p['port'])}"
            c, t = w.test_port(p.get("targetPort", p["port"]), where)
            try:
                socket.create_connection(("127.0.0.1", t), timeout=REQUEST_TIMEOUT_MIN).close()
            except OSError as e:
                raise Failure(f"{where}: targetPort {p.get('targetPort')} ({c} → 127.0.0.1:{t}): {e}")


def check_service_monitors():
    for sm in of_kind("ServiceMonitor"):
        where = f"ServiceMonitor {sm['metadata']['name']}"
        labels = sm["spec"].get("selector", {}).get("matchLabels", {})
        svcs = [s for s in of_kind("Service") if selects(labels, s["metadata"].get("labels", {}))]
        if not svcs:
            raise Failure(f"{where}: selector {labels} matches no rendered Service")
        for ep in sm["spec"].get("endpoints", []):
            # Like the Prometheus Operator: a selected Service without the endpoint's port name
            # contributes no target; at least one must have it.
            targets = [(svc, p) for svc in svcs for p in svc["spec"]["ports"] if p.get("name") == ep.get("port")]
            if not targets:
                raise Failure(f"{where}: none of the Services it selects "
                              f"({[s['metadata']['name'] for s in svcs]}) has a port named {ep.get('port')!r}")
            for svc, sp in targets:
                w = backing(svc)
                c, t = w.test_port(sp.get("targetPort", sp["port"]), f"{where} via Service {svc['metadata']['name']}")
                path, scheme = ep.get("path", "/metrics"), ep.get("scheme", "http")
                try:
                    status, body = http_get(t, path, scheme)
                except OSError as e:
                    raise Failure(f"{where}: GET {path} on {c} (→ 127.0.0.1:{t}): {e}")
                if status != 200 or "chorus_build_info" not in body:
                    raise Failure(f"{where}: GET {path} on Service {svc['metadata']['name']} port "
                                  f"{ep.get('port')} ({w.component} port {c} → 127.0.0.1:{t}) → {status}, "
                                  f"expected 200 with chorus_build_info (body starts {body[:120]!r})")
                log(f"{w.component}: {where}: {scheme} GET {path} on port {ep.get('port')} ({c} → 127.0.0.1:{t}) "
                    f"→ 200, chorus_build_info present")


# ---------------------------------------------------------------- main
WORKLOADS = []


def check_admin(w):
    """With admin.enabled: the console's page answers on the internal port (the main one
    without internal_port) and its login accepts the password the pod gets."""
    if str(w.get("admin.enabled", False)).lower() not in ("true", "1"):
        return
    internal = int(w.get("http_server.internal_port", 0) or 0)
    container = internal or int(w.get("http_server.port", 8000))
    where = f"{w.component}: admin console"
    if container not in w.ports:
        raise Failure(f"{where}: port {container} is not a port chorus listens on")
    local = w.ports[container]
    scheme = "HTTPS" if w.get("http_server.tls.cert_pem_file", "") else "HTTP"
    status, _ = http_get(local, "/admin/", scheme)
    if status != 200:
        raise Failure(f"{where}: GET /admin/ on port {container} → {status}, not 200{w.log_tail()}")
    password = w.env.get("CHORUS_ADMIN_PASSWORD") or w.get("admin.password", "")
    if scheme == "HTTPS":
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        conn = http.client.HTTPSConnection("127.0.0.1", local, timeout=5, context=ctx)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", local, timeout=5)
    try:
        conn.request("POST", "/admin/auth", body=json.dumps({"password": password}),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        body = r.read().decode(errors="replace")
    finally:
        conn.close()
    if r.status != 200 or "token" not in body:
        raise Failure(f"{where}: login with the pod's CHORUS_ADMIN_PASSWORD → {r.status} {body[:200]}")
    log(f"{where}: GET /admin/ on port {container} → 200, login → 200")


def main():
    if not os.access(CHORUS_BIN, os.X_OK):
        raise Failure(f"no chorus binary at {CHORUS_BIN} (set CHORUS_BIN or cargo build -p chorus)")
    for component, kind in (("gateway", "Deployment"), ("presence", "StatefulSet")):
        objs = [d for d in of_kind(kind) if component_of(d) == component]
        if objs:
            WORKLOADS.append(Workload(component, objs[0]))
    if not WORKLOADS:
        raise Failure("no gateway Deployment rendered")
    for w in WORKLOADS:
        w.checkconfig()
        log(f"{w.component}: chorus checkconfig{' --strict' if w.component == 'gateway' else ''} OK "
            f"({len(pem_files(w.cfg))} PEM file(s) from mounted volumes)")
    for w in WORKLOADS:
        w.start()
    for w in WORKLOADS:
        probes = [k for k in ("startupProbe", "livenessProbe", "readinessProbe") if k in w.ctr]
        if not probes:
            raise Failure(f"{w.what} has no probes")
        for kind in probes:
            check_probe(w, kind, w.ctr[kind])
    check_service_monitors()
    check_services()
    for w in WORKLOADS:
        if w.component == "gateway":
            check_admin(w)
    for w in WORKLOADS:
        took, killed = w.proc.stop()
        if killed:
            raise Failure(f"{w.component}: did not exit within {STOP_TIMEOUT:.0f}s of SIGTERM "
                          f"(killed){w.log_tail()}")
        if w.proc.p.returncode != 0:
            raise Failure(f"{w.component}: exited with {w.proc.p.returncode} after SIGTERM{w.log_tail()}")
        log(f"{w.component}: stopped by SIGTERM in {took:.1f}s")


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print(f"FAIL: {NAME}: {e}", file=sys.stderr)
        sys.exit(1)
    finally:
        stop_all()
