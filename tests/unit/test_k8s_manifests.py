"""The Kubernetes manifests (deploy/k8s), checked without a cluster: the production overlay is rendered (by
k8s_render.py, for the kustomize features the folder uses, cross-checked against `kubectl kustomize` where
kubectl is installed), every document validates strictly against the Kubernetes 1.31 schemas bundled with
kubernetes-validate, and the deployment's promises hold in what is rendered: gRPC health probes, resources, the
GPU, pod security, the headless Service, the autoscaler, secrets as files, pinned images, network policies."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from avatar_server.server import SERVICE_NAME
from tests.conftest import ROOT
from tests.unit.k8s_render import Doc, containers, env_of, key, pod_spec, render

K8S = ROOT / "deploy" / "k8s"
OVERLAY = K8S / "overlays" / "production"
K8S_VERSION = "1.31.0"


@pytest.fixture(scope="module")
def docs() -> dict[tuple[str, str], Doc]:
    rendered = render(OVERLAY)
    by_key = {key(d): d for d in rendered}
    assert len(by_key) == len(rendered), "two documents with the same kind and name"
    return by_key


def one(docs: dict[tuple[str, str], Doc], kind: str, name: str) -> Doc:
    assert (kind, name) in docs, f"{kind}/{name} is not rendered: {sorted(docs)}"
    return docs[(kind, name)]


KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not installed (kubectl kustomize renders offline)"
)


@needs_kubectl
def test_the_renderer_agrees_with_kubectl_kustomize(docs: dict[tuple[str, str], Doc]) -> None:
    assert KUBECTL is not None
    out = subprocess.run([KUBECTL, "kustomize", str(OVERLAY)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    theirs = {key(d): d for d in yaml.safe_load_all(out.stdout) if d}
    assert sorted(theirs) == sorted(docs)
    for k, doc in docs.items():
        assert theirs[k] == doc, f"{k}: kubectl kustomize renders it differently"


# --- schemas ---------------------------------------------------------------------------------------------------


def test_every_document_is_valid_against_the_kubernetes_schemas(docs: dict[tuple[str, str], Doc]) -> None:
    kinds = {kind for kind, _ in docs}
    assert {"StatefulSet", "Deployment", "Service", "Ingress", "HorizontalPodAutoscaler"} <= kinds
    assert {"PodDisruptionBudget", "NetworkPolicy", "Namespace"} <= kinds
    for doc in docs.values():
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize(
    "breakage",
    [
        "misspelled field",  # strict: a field the schema does not have
        "wrong type",
        "missing container name",
        "bad probe port",
    ],
)
def test_validation_catches_a_broken_manifest(docs: dict[tuple[str, str], Doc], breakage: str) -> None:
    doc = copy.deepcopy(one(docs, "StatefulSet", "avatar-engine"))
    container = doc["spec"]["template"]["spec"]["containers"][0]
    if breakage == "misspelled field":
        container["readinesProbe"] = container.pop("readinessProbe")
    elif breakage == "wrong type":
        doc["spec"]["replicas"] = "two"
    elif breakage == "missing container name":
        del container["name"]
    else:
        container["readinessProbe"]["grpc"]["port"] = "grpc"  # a gRPC probe's port must be a number
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


# --- the engine ------------------------------------------------------------------------------------------------


def test_engine_probes_are_the_grpc_health_service(docs: dict[tuple[str, str], Doc]) -> None:
    (engine,) = containers(one(docs, "StatefulSet", "avatar-engine"))
    ports = {p["name"]: p["containerPort"] for p in engine["ports"]}
    assert ports["grpc"] == 7860 and env_of(engine)["AVATAR_PORT"]["value"] == "7860"
    assert engine["readinessProbe"]["grpc"] == {"port": 7860, "service": SERVICE_NAME}
    assert engine["livenessProbe"]["grpc"] == {"port": 7860, "service": ""}
    startup = engine["startupProbe"]
    assert startup["grpc"]["port"] == 7860
    # the compose health check's start_period (300 s) at least: the models load, and are copied on a first start
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


def test_engine_requests_one_gpu_and_every_container_has_resources(docs: dict[tuple[str, str], Doc]) -> None:
    (engine,) = containers(one(docs, "StatefulSet", "avatar-engine"))
    assert engine["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert engine["resources"]["requests"]["nvidia.com/gpu"] == "1"
    every = [(key(d), c) for d in docs.values() for c in containers(d)]
    assert len(every) == 3
    for where, container in every:
        for part in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][part]), f"{where}: {part}"


def test_engine_drain_fits_the_termination_grace_period(docs: dict[tuple[str, str], Doc]) -> None:
    spec = pod_spec(one(docs, "StatefulSet", "avatar-engine"))
    assert spec is not None
    (engine,) = spec["containers"]
    pre_stop = engine["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    drain = float(pre_stop[1]) + float(env_of(engine)["AVATAR_GRACE_SECONDS"]["value"])
    assert spec["terminationGracePeriodSeconds"] >= drain + 5  # the engines' shutdown, with a margin


def test_engine_runs_as_the_compose_file_runs_it(docs: dict[tuple[str, str], Doc]) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.gpu.yml").read_text())["services"]["avatar-engine"]
    statefulset = one(docs, "StatefulSet", "avatar-engine")
    (engine,) = containers(statefulset)
    env = {name: e.get("value") for name, e in env_of(engine).items()}
    for name, value in compose["environment"].items():
        default = re.fullmatch(r"\$\{[A-Z_]+:-(.*)\}", str(value))
        expected = default.group(1) if default else str(value)
        if expected:
            assert env.get(name) == expected, name
    assert env["AVATAR_HOST"] == "0.0.0.0"
    assert env["AVATAR_MEMORY_URL"] == "redis://avatar-redis:6379/0"
    mounts = {m["mountPath"]: m["name"] for m in engine["volumeMounts"]}
    assert mounts["/app/checkpoints"] == "models" and "/tmp" in mounts
    claims = {c["metadata"]["name"] for c in statefulset["spec"]["volumeClaimTemplates"]}
    assert "models" in claims


def test_headless_service_lists_every_engine_replica(docs: dict[tuple[str, str], Doc]) -> None:
    service = one(docs, "Service", "avatar-engine-headless")
    statefulset = one(docs, "StatefulSet", "avatar-engine")
    assert service["spec"]["clusterIP"] == "None"
    assert statefulset["spec"]["serviceName"] == "avatar-engine-headless"
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["port"] for p in service["spec"]["ports"]} == {7860, 9100}
    (bridge,) = containers(one(docs, "Deployment", "avatar-bridge"))
    namespace = service["metadata"]["namespace"]
    target = f"dns:///avatar-engine-headless.{namespace}.svc.cluster.local:7860"
    assert env_of(bridge)["AVATAR_GRPC_TARGET"]["value"] == target


def test_metrics_are_scraped_where_the_engine_serves_them(docs: dict[tuple[str, str], Doc]) -> None:
    template = one(docs, "StatefulSet", "avatar-engine")["spec"]["template"]
    (engine,) = template["spec"]["containers"]
    env = env_of(engine)
    port = env["AVATAR_METRICS_PORT"]["value"]
    # reachable by Prometheus (pod address, no key): port 9100 is open to the monitoring namespace only
    assert env["AVATAR_METRICS_HOST"]["value"] == "0.0.0.0" and env["AVATAR_METRICS_OPEN"]["value"] == "true"
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == port
    assert {"name": "metrics", "containerPort": int(port)} in engine["ports"]


def test_autoscaler_scales_the_engine_from_one_on_served_metrics(docs: dict[tuple[str, str], Doc]) -> None:
    hpa = one(docs, "HorizontalPodAutoscaler", "avatar-engine")
    assert hpa["apiVersion"] == "autoscaling/v2" and hpa["spec"]["minReplicas"] == 1
    assert hpa["spec"]["maxReplicas"] > 1
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) in docs
    wanted = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    assert wanted == {"avatar_queue_depth", "avatar_active_sessions"}
    adapter = yaml.safe_load((K8S / "prometheus-adapter" / "values.yaml").read_text())
    served = {rule["name"]["as"] for rule in adapter["rules"]["custom"]}
    assert wanted <= served
    for rule in adapter["rules"]["custom"]:
        assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
        if rule["name"]["as"] == "avatar_queue_depth":  # the admission queue, not the engines' worker queues
            assert 'queue="admission"' in rule["seriesQuery"] and 'queue="admission"' in rule["metricsQuery"]
    exported = (ROOT / "avatar_server" / "observability" / "metrics.py").read_text()
    assert all(f'"{name}"' in exported for name in wanted), "the server exports these gauges"


# --- every pod -------------------------------------------------------------------------------------------------


def test_every_pod_is_hardened(docs: dict[tuple[str, str], Doc]) -> None:
    pods = {k: pod_spec(d) for k, d in docs.items() if pod_spec(d) is not None}
    assert len(pods) == 3
    for where, spec in pods.items():
        assert spec is not None
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec["automountServiceAccountToken"] is False, where
        # Service links would add AVATAR_BRIDGE_PORT=tcp://... (Service avatar-bridge), read as a setting
        assert spec["enableServiceLinks"] is False, where
        for container in spec.get("initContainers", []) + spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert context.get("runAsUser", spec["securityContext"].get("runAsUser", 0)) != 0, where
    for name in (("StatefulSet", "avatar-engine"), ("Deployment", "avatar-bridge")):
        spec = pods[name]
        assert spec is not None
        assert spec["securityContext"]["runAsUser"] == 10001  # the image's user (docker/Dockerfile.gpu)
        # args, never command: the image's entrypoint exports the secret files
        assert all("command" not in c for c in spec["containers"]), name


def test_images_are_pinned(docs: dict[tuple[str, str], Doc]) -> None:
    for doc in docs.values():
        for container in containers(doc):
            name, _, tag = container["image"].rpartition(":")
            assert name and tag and tag != "latest" and "/" not in tag, container["image"]
            assert container.get("imagePullPolicy") != "Always", container["image"]
    (redis,) = containers(one(docs, "Deployment", "avatar-redis"))
    assert re.fullmatch(r"redis:7\.\d+\.\d+(-[a-z0-9.]+)?", redis["image"])
    assert redis["args"][1:3] == ["--save", ""] and "--appendonly" in redis["args"]  # nothing persisted


SECRETISH = re.compile(r"(KEYS?|SECRET|TOKEN|PASSWORD|CREDENTIALS?)$")  # not AVATAR_SECRETS_DIR, a path


def test_secrets_are_files_never_env_values(docs: dict[tuple[str, str], Doc]) -> None:
    assert not [k for k in docs if k[0] == "Secret"], "Secrets are created apart (create-secrets.sh), not rendered"
    for doc in docs.values():
        for container in containers(doc):
            for name, entry in env_of(container).items():
                assert not (SECRETISH.search(name) and "value" in entry), f"{name} is inlined in {key(doc)}"
                assert not re.search(r"://[^/@]*:[^/@]*@", entry.get("value", "")), f"{name}: a password in a URL"
        spec = pod_spec(doc)
        for volume in [] if spec is None else spec.get("volumes", []):
            for source in volume.get("projected", {}).get("sources", []):
                for item in source.get("secret", {}).get("items", []):
                    # the entrypoint exports only files named like AVATAR_ variables
                    assert re.fullmatch(r"AVATAR_[A-Z0-9_]+", item["path"]), item
    for kind, name in (("StatefulSet", "avatar-engine"), ("Deployment", "avatar-bridge")):
        (container,) = containers(one(docs, kind, name))
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert mounts["/run/secrets"]["readOnly"] is True


def referenced_secrets(docs: dict[tuple[str, str], Doc]) -> dict[str, set[str]]:
    """Secret name -> the keys the manifests need from it (optional sources left out)."""
    wanted: dict[str, set[str]] = {}
    for doc in docs.values():
        spec = pod_spec(doc)
        for volume in [] if spec is None else spec.get("volumes", []):
            for source in volume.get("projected", {}).get("sources", []):
                secret = source.get("secret")
                if secret and not secret.get("optional"):
                    wanted.setdefault(secret["name"], set()).update(i["key"] for i in secret.get("items", []))
        if doc["kind"] == "Ingress":
            for tls in doc["spec"]["tls"]:
                wanted.setdefault(tls["secretName"], set()).update({"tls.crt", "tls.key"})
    return wanted


@needs_kubectl
@pytest.mark.skipif(shutil.which("openssl") is None, reason="deploy/make-secrets.sh needs openssl")
def test_create_secrets_makes_every_secret_the_manifests_mount(
    docs: dict[tuple[str, str], Doc], tmp_path: Path
) -> None:
    made = subprocess.run(
        [str(ROOT / "deploy" / "make-secrets.sh"), "avatar.example.org", str(tmp_path)], capture_output=True, timeout=60
    )
    assert made.returncode == 0, made.stderr
    out = subprocess.run(
        [str(K8S / "create-secrets.sh"), "avatar", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "DRY_RUN": "1", "HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    secrets = {d["metadata"]["name"]: d for d in yaml.safe_load_all(out.stdout) if d}
    for doc in secrets.values():
        assert doc["kind"] == "Secret" and doc["metadata"]["namespace"] == "avatar"
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    for name, keys in referenced_secrets(docs).items():
        assert name in secrets, f"create-secrets.sh makes no Secret {name}"
        assert keys <= set(secrets[name]["data"]), name
    assert secrets["avatar-tls"]["type"] == "kubernetes.io/tls"
    assert "avatar-cloud-keys" in secrets  # optional in the pod, made anyway (empty keys)
    assert (tmp_path / "session_secret").stat().st_mode & 0o077 == 0  # generated, readable by its owner only
    assert "avatar-session-secret" in out.stderr or "session_secret" in out.stderr
    assert all(value not in out.stderr for d in secrets.values() for value in d.get("data", {}).values() if value)


def test_missing_secret_files_are_named(tmp_path: Path) -> None:
    out = subprocess.run(
        [str(K8S / "create-secrets.sh"), "avatar", str(tmp_path)], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 1 and "engine_api_keys is missing" in out.stderr and "make-secrets.sh" in out.stderr


# --- the bridge, the Ingress, disruption budgets, network policies ----------------------------------------------


def test_bridge_replicas_probes_and_sticky_sessions(docs: dict[tuple[str, str], Doc]) -> None:
    deployment = one(docs, "Deployment", "avatar-bridge")
    assert deployment["spec"]["replicas"] == 2
    (bridge,) = containers(deployment)
    assert bridge["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert {"name": "http", "containerPort": 8000} in bridge["ports"]
    assert env_of(bridge)["AVATAR_SEED_MODELS"]["value"] == "false"
    assert one(docs, "Service", "avatar-bridge")["spec"]["sessionAffinity"] == "ClientIP"


def test_ingress_terminates_tls_and_keeps_websockets(docs: dict[tuple[str, str], Doc]) -> None:
    ingresses = [d for k, d in docs.items() if k[0] == "Ingress"]
    (bridge,) = containers(one(docs, "Deployment", "avatar-bridge"))
    origin = env_of(bridge)["AVATAR_ALLOWED_ORIGINS"]["value"]
    paths: dict[str, dict[str, str]] = {}
    for ingress in ingresses:
        notes = ingress["metadata"]["annotations"]
        (rule,) = ingress["spec"]["rules"]
        assert f"https://{rule['host']}" == origin  # the bridge's same-origin check
        assert rule["host"] in ingress["spec"]["tls"][0]["hosts"]
        assert notes["nginx.ingress.kubernetes.io/affinity"] == "cookie"
        for path in rule["http"]["paths"]:
            assert path["backend"]["service"]["name"] == "avatar-bridge"
            paths[path["path"]] = notes
    assert int(paths["/api/v1/avatar/converse"]["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 900
    assert paths["/"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "26m"


def test_disruption_budgets_cover_the_engine_and_the_bridge(docs: dict[tuple[str, str], Doc]) -> None:
    for kind, name in (("StatefulSet", "avatar-engine"), ("Deployment", "avatar-bridge")):
        budget = one(docs, "PodDisruptionBudget", name)
        labels = one(docs, kind, name)["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert one(docs, "PodDisruptionBudget", "avatar-bridge")["spec"]["minAvailable"] == 1


def allowed(policy: Doc) -> dict[int, list[dict[str, Any]]]:
    """Port -> the peers allowed to reach it."""
    out: dict[int, list[dict[str, Any]]] = {}
    for rule in policy["spec"]["ingress"]:
        for port in rule["ports"]:
            out.setdefault(port["port"], []).extend(rule["from"])
    return out


def test_network_policies_let_only_the_right_peers_in(docs: dict[tuple[str, str], Doc]) -> None:
    bridge_pods = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "avatar-bridge"}}}
    engine_pods = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "avatar-engine"}}}
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    assert allowed(one(docs, "NetworkPolicy", "avatar-engine")) == {7860: [bridge_pods], 9100: [monitoring]}
    assert allowed(one(docs, "NetworkPolicy", "avatar-redis")) == {6379: [engine_pods]}
    for kind, name in (
        ("StatefulSet", "avatar-engine"),
        ("Deployment", "avatar-bridge"),
        ("Deployment", "avatar-redis"),
    ):
        policy = one(docs, "NetworkPolicy", name)
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        labels = one(docs, kind, name)["spec"]["template"]["metadata"]["labels"]
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
