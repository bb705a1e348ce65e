"""Small offline checkers for the cluster configs: KubeRay manifests (cluster/kuberay/*.yaml) and the Ray
cluster-launcher config (ray_cluster.yaml). No Kubernetes, no network, no Ray cluster.

Every checker takes plain parsed YAML (dicts and lists) plus a `where` label and returns a list of problems, one
string each naming the path that is wrong; an empty list means the object passes. test_manifests.py runs them on
the real files and on deliberately broken copies, so each check is seen to fail.

Shape legend: `doc` is one parsed YAML document; a "cluster spec" is a RayCluster `spec`, a RayJob
`spec.rayClusterSpec` or a RayService `spec.rayClusterConfig` (headGroupSpec + workerGroupSpecs).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any, Iterator

SHARED_MOUNT = "/mnt/seriesforge"
SHARED_CLAIM = "seriesforge-shared"
GCS_PORT, DASHBOARD_PORT, SERVE_PORT = 6379, 8265, 8000
SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSWORD", re.IGNORECASE)
AWS_KEY_ID = re.compile(r"AKIA[0-9A-Z]{16}")
PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
# NAME=value in shell text where NAME looks secret and the value is a literal (not $VAR, "$(...)" or ${...}).
SHELL_SECRET = re.compile(r"\b[A-Z0-9_]*(?:TOKEN|SECRET|PASSWORD|_KEY)[A-Z0-9_]*=(?![\"']?\$)[^\s]+")
TEXT_PATTERNS = (("AWS access key id", AWS_KEY_ID), ("private key", PRIVATE_KEY), ("NAME=secret", SHELL_SECRET))


def cluster_specs(doc: dict) -> Iterator[tuple[str, dict]]:
    """The RayCluster spec(s) inside a KubeRay object: (where, spec)."""
    kind, spec = doc.get("kind"), doc.get("spec") or {}
    if kind == "RayCluster":
        yield "RayCluster.spec", spec
    elif kind == "RayJob":
        yield "RayJob.spec.rayClusterSpec", spec.get("rayClusterSpec") or {}
    elif kind == "RayService":
        yield "RayService.spec.rayClusterConfig", spec.get("rayClusterConfig") or {}


def pod_groups(cluster: dict, where: str) -> Iterator[tuple[str, dict]]:
    """Head and worker groups of a cluster spec: (where, group) with `template` and `rayStartParams`."""
    yield f"{where}.headGroupSpec", cluster.get("headGroupSpec") or {}
    for i, group in enumerate(cluster.get("workerGroupSpecs") or []):
        yield f"{where}.workerGroupSpecs[{i}]", group


def ray_container(group: dict) -> dict:
    """KubeRay runs Ray in a pod's first container."""
    containers = ((group.get("template") or {}).get("spec") or {}).get("containers") or [{}]
    return containers[0]


def token_clients(doc: dict) -> Iterator[tuple[str, dict]]:
    """Everything that talks to Ray and so needs the token: (where, object with `env`). The Ray container of every
    pod group, the autoscaler sidecar (autoscalerOptions.env) and a RayJob's submitter pod."""
    for where, cluster in cluster_specs(doc):
        for gwhere, group in pod_groups(cluster, where):
            yield f"{gwhere}.template.spec.containers[0]", ray_container(group)
        if cluster.get("enableInTreeAutoscaling"):
            yield f"{where}.autoscalerOptions", cluster.get("autoscalerOptions") or {}
    submitter = (doc.get("spec") or {}).get("submitterPodTemplate")
    if doc.get("kind") == "RayJob":
        if not submitter:
            yield "RayJob.spec.submitterPodTemplate", {}
        else:
            yield "RayJob.spec.submitterPodTemplate.spec.containers[0]", ray_container({"template": submitter})


def ray_start_params_problems(params: Any, where: str) -> list[str]:
    """rayStartParams is map[string]string in KubeRay's CRD: an int or bool value is rejected by the API server."""
    if not isinstance(params, dict):
        return [f"{where}.rayStartParams: expected a map, got {type(params).__name__}"]
    return [f"{where}.rayStartParams.{key}: value {value!r} must be a string"
            for key, value in params.items() if not isinstance(value, str)]


def container_problems(container: dict, where: str, ports: tuple[int, ...] = ()) -> list[str]:
    problems = [f"{where}.{field}: missing" for field in ("name", "image", "resources") if not container.get(field)]
    exposed = {p.get("containerPort") for p in container.get("ports") or []}
    problems += [f"{where}.ports: containerPort {port} not exposed" for port in ports if port not in exposed]
    return problems


def cluster_spec_problems(cluster: dict, where: str, *, serve: bool = False) -> list[str]:
    """The fields KubeRay needs for the head group and every worker group."""
    head = cluster.get("headGroupSpec")
    if not isinstance(head, dict):
        return [f"{where}.headGroupSpec: missing"]
    head_ports = (GCS_PORT, DASHBOARD_PORT) + ((SERVE_PORT,) if serve else ())
    problems = ray_start_params_problems(head.get("rayStartParams"), f"{where}.headGroupSpec")
    problems += container_problems(ray_container(head), f"{where}.headGroupSpec.template.spec.containers[0]",
                                   head_ports)
    workers = cluster.get("workerGroupSpecs")
    if not workers:
        problems.append(f"{where}.workerGroupSpecs: no worker group")
    for gwhere, group in list(pod_groups(cluster, where))[1:]:
        if not group.get("groupName"):
            problems.append(f"{gwhere}.groupName: missing")
        counts = [group.get(k) for k in ("minReplicas", "replicas", "maxReplicas")]
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
            problems.append(f"{gwhere}: minReplicas, replicas, maxReplicas must be integers, got {counts}")
        elif not counts[0] <= counts[1] <= counts[2]:
            problems.append(f"{gwhere}: needs minReplicas <= replicas <= maxReplicas, got {counts}")
        problems += ray_start_params_problems(group.get("rayStartParams"), gwhere)
        if not ray_container(group).get("image"):
            problems.append(f"{gwhere}.template.spec.containers[0].image: missing")
    return problems


def env_of(obj: dict) -> dict[str, dict]:
    return {e.get("name"): e for e in obj.get("env") or [] if isinstance(e, dict)}


def secret_env_problems(obj: dict, where: str, name: str) -> list[str]:
    """Env var `name` must come from a Secret (valueFrom.secretKeyRef with name and key), never a literal value."""
    entry = env_of(obj).get(name)
    if entry is None:
        return [f"{where}.env.{name}: missing"]
    if "value" in entry:
        return [f"{where}.env.{name}: literal value; use valueFrom.secretKeyRef"]
    ref = (entry.get("valueFrom") or {}).get("secretKeyRef") or {}
    return [] if ref.get("name") and ref.get("key") else [f"{where}.env.{name}: no valueFrom.secretKeyRef"]


def token_auth_problems(obj: dict, where: str) -> list[str]:
    mode = env_of(obj).get("RAY_AUTH_MODE") or {}
    problems = [] if mode.get("value") == "token" else [f"{where}.env.RAY_AUTH_MODE: must be 'token'"]
    return problems + secret_env_problems(obj, where, "RAY_AUTH_TOKEN")


def walk(node: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """Every (path, value) in nested dicts and lists."""
    yield where, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{where}[{i}]")


def literal_secret_problems(doc: Any, where: str) -> list[str]:
    """Env entries whose secret-looking name carries a literal value, and known credential formats anywhere."""
    problems = []
    for path, node in walk(doc):
        if isinstance(node, dict) and isinstance(node.get("name"), str) and "value" in node \
                and SECRET_NAME.search(node["name"]):
            problems.append(f"{where}.{path}: {node['name']} has a literal value")
        if isinstance(node, str):
            problems += [f"{where}.{path}: {kind} in text" for kind, pattern in TEXT_PATTERNS if pattern.search(node)]
    return problems


def text_secret_problems(text: str, where: str) -> list[str]:
    """The same scan on raw file text, comments included."""
    return [f"{where}: {kind} in text" for kind, pattern in TEXT_PATTERNS if pattern.search(text)]


def shared_volume_problems(group: dict, where: str) -> list[str]:
    """The pod mounts the shared PVC at SHARED_MOUNT in its Ray container."""
    pod = (group.get("template") or {}).get("spec") or {}
    volumes = {v.get("name") for v in pod.get("volumes") or []
               if (v.get("persistentVolumeClaim") or {}).get("claimName") == SHARED_CLAIM}
    mounts = {m.get("name") for m in ray_container(group).get("volumeMounts") or []
              if m.get("mountPath") == SHARED_MOUNT}
    if not volumes:
        return [f"{where}: no volume from PVC {SHARED_CLAIM}"]
    return [] if volumes & mounts else [f"{where}: PVC {SHARED_CLAIM} not mounted at {SHARED_MOUNT}"]


def pvc_problems(docs: list[dict], where: str) -> list[str]:
    claims = [d for d in docs if d.get("kind") == "PersistentVolumeClaim"
              and (d.get("metadata") or {}).get("name") == SHARED_CLAIM]
    if not claims:
        return [f"{where}: no PersistentVolumeClaim {SHARED_CLAIM}"]
    modes = (claims[0].get("spec") or {}).get("accessModes") or []
    return [] if "ReadWriteMany" in modes else [f"{where}: PVC {SHARED_CLAIM} is not ReadWriteMany ({modes})"]


def import_path_problems(import_path: str, source_root: Path) -> list[str]:
    """`module.sub:function` must name a file under source_root that defines `function` (read with ast)."""
    module, sep, function = import_path.partition(":")
    if not sep:
        return [f"import_path {import_path!r}: expected module:function"]
    base = source_root.joinpath(*module.split("."))
    path = next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)
    if path is None:
        return [f"import_path {import_path!r}: no module file under {source_root}"]
    tree = ast.parse(path.read_text())
    defined = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return [] if function in defined else [f"import_path {import_path!r}: {path.name} defines no {function}()"]


def launcher_problems(config: dict, schema: dict) -> list[str]:
    """ray_cluster.yaml: Ray's launcher JSON schema, node types and worker bounds, setup and start commands."""
    import jsonschema

    validator = jsonschema.Draft7Validator(schema)
    problems = [f"schema: {'.'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in validator.iter_errors(config)]
    types = config.get("available_node_types") or {}
    if config.get("head_node_type") not in types:
        problems.append(f"head_node_type {config.get('head_node_type')!r} is not one of {sorted(types)}")
    cap = config.get("max_workers", 0)
    for name, node in types.items():
        low, high = node.get("min_workers", 0), node.get("max_workers", cap)
        if not all(isinstance(n, int) for n in (low, high, cap)):
            continue  # a wrong type is already a schema error
        if not low <= high <= cap:
            problems.append(f"available_node_types.{name}: needs min_workers {low} <= max_workers {high} <= {cap}")
    setup = " ; ".join(config.get("setup_commands") or [])
    if "make env" not in setup and "pip install" not in setup:
        problems.append("setup_commands: do not install the project (make env or pip install)")
    if not any("ray start" in c and "--head" in c for c in config.get("head_start_ray_commands") or []):
        problems.append("head_start_ray_commands: no `ray start --head`")
    if not any("ray start" in c and "--address" in c for c in config.get("worker_start_ray_commands") or []):
        problems.append("worker_start_ray_commands: no `ray start --address`")
    return problems
