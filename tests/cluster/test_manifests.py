"""Offline checks of the cluster configs: the KubeRay manifests (cluster/kuberay/), the image recipe
(cluster/Dockerfile) and the cluster-launcher config (ray_cluster.yaml). No network, no Kubernetes, no Ray cluster.

What is checked: Ray's own launcher schema; the fields KubeRay needs (string-valued rayStartParams, head ports,
replica bounds); token authentication on everything that talks to Ray, with the token from a Secret; no literal
credentials anywhere; one shared ReadWriteMany volume at /mnt/seriesforge on every pod; entrypoint and Serve
import_path that resolve inside this repo. The checkers live in manifest_checks.py; the last tests feed them
broken copies so each check is seen to fail.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
import shlex
from pathlib import Path

import pytest
import ray
import yaml

import manifest_checks as mc

ROOT = Path(__file__).resolve().parents[2]
KUBERAY = ROOT / "cluster" / "kuberay"
MANIFESTS = {"raycluster.yaml": "RayCluster", "rayjob.yaml": "RayJob", "rayservice.yaml": "RayService"}
DOCKERFILE = ROOT / "cluster" / "Dockerfile"


def load_docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((KUBERAY / name).read_text()) if d is not None]


def ray_object(name: str) -> dict:
    (doc,) = [d for d in load_docs(name) if d.get("apiVersion") == "ray.io/v1"]
    return doc


def launcher_schema() -> dict:
    return json.loads(importlib.resources.files("ray.autoscaler").joinpath("ray-schema.json").read_text())


def all_problems(doc: dict) -> list[str]:
    """Every per-object check on one KubeRay object."""
    problems = mc.literal_secret_problems(doc, doc.get("kind", "?"))
    for where, cluster in mc.cluster_specs(doc):
        problems += mc.cluster_spec_problems(cluster, where, serve=doc.get("kind") == "RayService")
        problems += [p for gw, g in mc.pod_groups(cluster, where) for p in mc.shared_volume_problems(g, gw)]
    problems += [p for where, obj in mc.token_clients(doc) for p in mc.token_auth_problems(obj, where)]
    return problems


# ---------------------------------------------------------------- ray_cluster.yaml (cluster launcher)

def test_launcher_config_passes_rays_schema_and_bounds():
    config = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    assert mc.launcher_problems(config, launcher_schema()) == []
    assert config["available_node_types"]["gpu_worker"]["resources"].get("GPU", 0) >= 1


def test_launcher_checks_catch_a_broken_config():
    config = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    config["head_node_type"] = "nope"
    config["available_node_types"]["gpu_worker"].update(min_workers=9, max_workers=4)
    config["upscaling_speed"] = "fast"   # schema: a number
    config["setup_commands"] = ["echo hi"]
    config["worker_start_ray_commands"] = ["ray stop"]
    problems = "\n".join(mc.launcher_problems(config, launcher_schema()))
    for expected in ("schema: upscaling_speed", "head_node_type 'nope'", "gpu_worker: needs min_workers 9",
                     "setup_commands", "worker_start_ray_commands"):
        assert expected in problems, problems


# ---------------------------------------------------------------- KubeRay manifests

@pytest.mark.parametrize("name, kind", MANIFESTS.items())
def test_manifest_parses_with_kind_and_kuberay_fields(name, kind):
    docs = load_docs(name)
    ray_docs = [d for d in docs if d.get("apiVersion") == "ray.io/v1"]
    assert [d["kind"] for d in ray_docs] == [kind]
    assert ray_docs[0]["metadata"]["name"]
    assert all_problems(ray_docs[0]) == []
    assert mc.pvc_problems(docs, name) == []
    assert 50 <= len((KUBERAY / name).read_text().splitlines()) <= 200


def test_raycluster_has_an_autoscaling_gpu_group_and_an_idle_head():
    spec = ray_object("raycluster.yaml")["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["headGroupSpec"]["rayStartParams"] == {"dashboard-host": "0.0.0.0", "num-cpus": "0"}
    (gpu,) = [g for g in spec["workerGroupSpecs"] if g["groupName"] == "gpu"]
    assert gpu["minReplicas"] < gpu["maxReplicas"] == 8
    assert mc.ray_container(gpu)["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_rayjob_runs_the_training_entrypoint_on_8_gpus_and_cleans_up():
    spec = ray_object("rayjob.yaml")["spec"]
    assert spec["entrypoint"] == "python jobs/train.py jobs/specs/t2s_600k_zero2.yaml"
    assert spec["shutdownAfterJobFinishes"] is True and spec["submissionMode"] == "K8sJobMode"
    assert isinstance(spec["ttlSecondsAfterFinished"], int) and spec["ttlSecondsAfterFinished"] >= 0
    gpus = sum(g["replicas"] * mc.ray_container(g)["resources"]["limits"].get("nvidia.com/gpu", 0)
               for g in spec["rayClusterSpec"]["workerGroupSpecs"])
    assert gpus == 8


def test_rayjob_entrypoint_files_exist_in_the_repo():
    argv = shlex.split(ray_object("rayjob.yaml")["spec"]["entrypoint"])
    assert argv[0] == "python" and len(argv) == 3
    assert (ROOT / argv[1]).is_file(), argv[1]
    assert (ROOT / argv[2]).is_file(), f"{argv[2]} missing: the job spec of issue #9 is not in the repo yet"


def test_rayjob_spec_trains_into_the_shared_volume():
    spec_path = ROOT / shlex.split(ray_object("rayjob.yaml")["spec"]["entrypoint"])[2]
    assert spec_path.is_file(), f"{spec_path.relative_to(ROOT)} missing"
    job = yaml.safe_load(spec_path.read_text())
    assert str(job["out"]).startswith(mc.SHARED_MOUNT + "/"), f"out: {job['out']} is not on the shared volume"
    workers = (job.get("set") or {}).get("scaling.num_workers")
    assert workers is None or int(workers) == 8, f"scaling.num_workers={workers}, the RayJob has 8 GPU workers"


def test_rayservice_serve_config_is_a_string_that_deploys_our_app():
    from ray.serve.schema import ServeDeploySchema

    from seriesforge.serving.config import from_args

    doc = ray_object("rayservice.yaml")
    text = doc["spec"]["serveConfigV2"]
    assert isinstance(text, str), "KubeRay wants serveConfigV2 as a YAML string"
    serve_config = yaml.safe_load(text)
    ServeDeploySchema.model_validate(serve_config)   # what Ray's dashboard will accept
    (app,) = serve_config["applications"]
    assert mc.import_path_problems(app["import_path"], ROOT / "platform") == []
    cfg = from_args(app["args"])                     # seriesforge's own rules for `args`
    assert cfg.models and all(p.startswith(mc.SHARED_MOUNT + "/") for p in cfg.models.values())
    # Serve listens beyond loopback here, so the API must require a key, filled from a Secret everywhere.
    assert serve_config["http_options"]["host"] == "0.0.0.0" and cfg.api_key_env
    for where, container in mc.token_clients(doc):
        if "containers" in where:
            assert mc.secret_env_problems(container, where, cfg.api_key_env) == []


def test_every_ray_client_uses_token_auth_from_a_secret():
    clients = [(name, where) for name in MANIFESTS for where, obj in mc.token_clients(ray_object(name))
               if mc.token_auth_problems(obj, where) == []]
    # heads and gpu groups of 3 manifests, 2 autoscaler sidecars, 1 submitter
    assert len(clients) == 9, clients


def test_no_literal_credentials_in_any_cluster_file():
    files = [KUBERAY / n for n in MANIFESTS] + [ROOT / "ray_cluster.yaml", DOCKERFILE]
    for path in files:
        text = path.read_text()
        assert mc.text_secret_problems(text, path.name) == []
        for doc in yaml.safe_load_all(text) if path.suffix == ".yaml" else []:
            assert mc.literal_secret_problems(doc, path.name) == []
    service = yaml.safe_load(ray_object("rayservice.yaml")["spec"]["serveConfigV2"])
    assert mc.literal_secret_problems(service, "serveConfigV2") == []


def test_all_manifests_share_one_volume_claim():
    claims = [[d for d in load_docs(n) if d.get("kind") == "PersistentVolumeClaim"] for n in MANIFESTS]
    assert all(c == claims[0] for c in claims), "the PVC document must be identical in every manifest"
    assert claims[0][0]["metadata"]["name"] == mc.SHARED_CLAIM


def test_image_versions_and_workdir_agree_with_the_dockerfile():
    text = DOCKERFILE.read_text()
    ray_version = re.search(r"^ARG RAY_VERSION=(\S+)$", text, re.M).group(1)
    assert ray_version == ray.__version__
    assert re.search(r"^FROM rayproject/ray:\$\{RAY_VERSION\}-py311-\$\{FLAVOR\}$", text, re.M)
    assert re.search(r"^RUN pip install -e \.", text, re.M) and re.search(r"^COPY .*\bjobs jobs$", text, re.M)
    workdir = re.search(r"^WORKDIR (\S+)$", text, re.M).group(1)
    for name in MANIFESTS:
        doc = ray_object(name)
        for where, cluster in mc.cluster_specs(doc):
            assert cluster["rayVersion"] == ray_version
            for gwhere, group in mc.pod_groups(cluster, where):
                container = mc.ray_container(group)
                assert container["image"] == "REGISTRY/seriesforge:latest", gwhere
                assert container["workingDir"] == workdir, gwhere


# ---------------------------------------------------------------- the checks can fail

def _int_start_param(d):
    d["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0


def _replica_bounds(d):
    d["spec"]["workerGroupSpecs"][0].update(minReplicas=5, replicas=5, maxReplicas=2)


def _literal_token(d):
    env = mc.ray_container(d["spec"]["workerGroupSpecs"][0])["env"]
    env[:] = [e for e in env if e["name"] != "RAY_AUTH_TOKEN"] + [{"name": "RAY_AUTH_TOKEN", "value": "abc123"}]


def _auth_disabled(d):
    mc.ray_container(d["spec"]["headGroupSpec"])["env"][0]["value"] = "disabled"


def _no_dashboard_port(d):
    head = mc.ray_container(d["spec"]["headGroupSpec"])
    head["ports"] = [p for p in head["ports"] if p["containerPort"] != 8265]


def _volume_elsewhere(d):
    mc.ray_container(d["spec"]["workerGroupSpecs"][0])["volumeMounts"][0]["mountPath"] = "/data"


def _no_worker_image(d):
    del mc.ray_container(d["spec"]["workerGroupSpecs"][0])["image"]


def _aws_key(d):
    d["metadata"]["annotations"] = {"note": "AKIA" + "ABCDEFGHIJKLMNOP"}


def _autoscaler_without_token(d):
    d["spec"]["autoscalerOptions"]["env"] = []


@pytest.mark.parametrize("break_it, expected", [
    (_int_start_param, "rayStartParams.num-cpus: value 0 must be a string"),
    (_replica_bounds, "needs minReplicas <= replicas <= maxReplicas, got [5, 5, 2]"),
    (_literal_token, "env.RAY_AUTH_TOKEN: literal value"),
    (_literal_token, "RAY_AUTH_TOKEN has a literal value"),
    (_auth_disabled, "headGroupSpec.template.spec.containers[0].env.RAY_AUTH_MODE: must be 'token'"),
    (_no_dashboard_port, "containerPort 8265 not exposed"),
    (_volume_elsewhere, f"PVC {mc.SHARED_CLAIM} not mounted at {mc.SHARED_MOUNT}"),
    (_no_worker_image, "workerGroupSpecs[0].template.spec.containers[0].image: missing"),
    (_aws_key, "AWS access key id in text"),
    (_autoscaler_without_token, "autoscalerOptions.env.RAY_AUTH_MODE: must be 'token'"),
])
def test_checks_report_a_broken_manifest(break_it, expected):
    doc = copy.deepcopy(ray_object("raycluster.yaml"))
    assert all_problems(doc) == []
    break_it(doc)
    problems = all_problems(doc)
    assert any(expected in p for p in problems), problems


def test_other_checks_report_broken_inputs():
    assert mc.import_path_problems("seriesforge.serving.app:no_such_builder", ROOT / "platform")
    assert mc.import_path_problems("seriesforge.no_such_module:build_app", ROOT / "platform")
    assert mc.text_secret_problems("export RAY_AUTH_TOKEN=abc123", "x")
    assert not mc.text_secret_problems('export RAY_AUTH_TOKEN="$(ray get-auth-token)"', "x")
    job = {"kind": "RayJob", "spec": {"rayClusterSpec": {}}}
    assert ("RayJob.spec.submitterPodTemplate", {}) in list(mc.token_clients(job))
    assert mc.pvc_problems([{"kind": "PersistentVolumeClaim", "metadata": {"name": mc.SHARED_CLAIM},
                             "spec": {"accessModes": ["ReadWriteOnce"]}}], "x")


def test_ray_cluster_yaml_keeps_token_auth_on_and_ships_the_token_as_a_file():
    launcher = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in launcher[key] if "ray start" in c]
        assert starts and all("RAY_AUTH_MODE=token" in c for c in starts), (key, starts)
    assert any(dst.endswith(".ray/auth_token") and src == "~/.ray/auth_token"
               for dst, src in launcher["file_mounts"].items()), launcher["file_mounts"]


def test_every_way_of_starting_a_node_sets_the_node_environment():
    """seriesforge.runtime.NODE_ENV reaches the raylet of every node, whichever way it starts: the launcher's
    `ray start` commands, the image KubeRay runs, the local multi-node cluster (embedded Ray: tests/test_runtime.py)."""
    import importlib.util

    from seriesforge.runtime import NODE_ENV

    launcher = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    starts = [c for key in ("head_start_ray_commands", "worker_start_ray_commands")
              for c in launcher[key] if "ray start" in c]
    spec = importlib.util.spec_from_file_location("local_cluster", ROOT / "cluster" / "local" / "local_cluster.py")
    local_cluster = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(local_cluster)
    dockerfile = DOCKERFILE.read_text()
    for name, value in NODE_ENV.items():
        assert all(f"{name}={value}" in shlex.split(c) for c in starts), (name, starts)
        assert re.search(rf"^\s*{name}={value}\s*$", dockerfile, re.M), f"{DOCKERFILE}: no ENV {name}={value}"
        assert local_cluster.cluster_env()[name] == value
