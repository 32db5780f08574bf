"""deploy/kubernetes, checked offline: every manifest against Kubernetes' own
schemas (kubernetes-validate, strict: an unknown field fails), the kustomization
built by kubectl where it is installed, and what the pods run read by kadnode
itself: the ConfigMap's settings file and each container's arguments, and the
SRV name --dns-seed asks for against the Service that publishes it."""

from __future__ import annotations

import shutil
import subprocess
from importlib.metadata import requires
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from kadnode.cli.main import main
from kadnode.config import DNS_SEED_SRV_PREFIX

KUBE = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
VERSION = "1.30.0"  # the oldest Kubernetes these are written for (policy/v1, apps/v1)


def files() -> list[Path]:
    return sorted(p for p in KUBE.glob("*.yaml") if p.name != "kustomization.yaml")


def manifests() -> list[dict]:
    return [doc for path in files() for doc in yaml.safe_load_all(path.read_text())]


def by_kind(kind: str) -> list[dict]:
    return [m for m in manifests() if m["kind"] == kind]


@pytest.mark.parametrize("doc", manifests(), ids=lambda m: f"{m['kind']}/{m['metadata']['name']}")
def test_every_manifest_is_valid_kubernetes_strictly(doc):
    kubernetes_validate.validate(doc, VERSION, strict=True)


def test_the_kustomization_lists_every_manifest_and_kubectl_builds_it():
    listed = yaml.safe_load((KUBE / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == [p.name for p in files()]
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: the kustomize build was not checked")
    built = subprocess.run(
        ["kubectl", "kustomize", str(KUBE)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    docs = list(yaml.safe_load_all(built))
    assert len(docs) == len(manifests())
    for doc in docs:
        kubernetes_validate.validate(doc, VERSION, strict=True)


def test_the_pods_settings_and_arguments_are_what_kadnode_run_takes(capsys, tmp_path):
    (config_map,) = by_kind("ConfigMap")
    settings = tmp_path / "kadnode.toml"
    settings.write_text(config_map["data"]["kadnode.toml"])
    for statefulset in by_kind("StatefulSet"):
        (container,) = statefulset["spec"]["template"]["spec"]["containers"]
        args = [a.replace("$(POD_IP)", "10.1.2.3").replace("$(POD_NAMESPACE)", "default")
                for a in container["args"]]  # fmt: skip
        assert args[0] == "run"
        args[args.index("--config") + 1] = str(settings)
        assert main(["config", *args[1:]]) == 0, capsys.readouterr().err
        shown = capsys.readouterr().out
        assert 'advertise = ["10.1.2.3:8467"]  # flag' in shown
        assert f'data-dir = "/var/lib/kadnode"  # config file {settings}' in shown
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["data"] == "/var/lib/kadnode"


def test_dns_seed_asks_for_the_srv_records_the_seed_service_publishes():
    """Cluster DNS answers _PORTNAME._PROTOCOL.SERVICE.NAMESPACE.svc.cluster.local
    for a headless Service's named port; --dns-seed NAME asks for _kadnode._udp.NAME."""
    seeds = next(s for s in by_kind("Service") if s["metadata"]["name"] == "kadnode-seeds")
    assert seeds["spec"]["clusterIP"] == "None"
    (port,) = seeds["spec"]["ports"]
    published = f"_{port['name']}._{port['protocol'].lower()}"
    assert published == DNS_SEED_SRV_PREFIX
    for statefulset in by_kind("StatefulSet"):
        args = statefulset["spec"]["template"]["spec"]["containers"][0]["args"]
        name = args[args.index("--dns-seed") + 1]
        assert name == f"{seeds['metadata']['name']}.$(POD_NAMESPACE).svc.cluster.local"
        assert (
            statefulset["spec"]["selector"]["matchLabels"]
            == statefulset["spec"]["template"]["metadata"]["labels"]
        )
    bootstrap = next(
        s for s in by_kind("StatefulSet") if s["spec"]["serviceName"] == "kadnode-seeds"
    )
    assert seeds["spec"]["selector"] == bootstrap["spec"]["selector"]["matchLabels"]


def test_every_statefulset_has_a_disruption_budget():
    budgets = [b["spec"]["selector"]["matchLabels"] for b in by_kind("PodDisruptionBudget")]
    for statefulset in by_kind("StatefulSet"):
        assert statefulset["spec"]["selector"]["matchLabels"] in budgets


def runtime_closure() -> set[str]:
    """Every distribution installing kadnode brings, on this platform and Python."""
    seen: set[str] = set()
    todo = ["kadnode"]
    while todo:
        name = todo.pop()
        for text in requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue  # an extra's (test, bench) or another platform's
            dist = canonicalize_name(requirement.name)
            if dist not in seen:
                seen.add(dist)
                todo.append(dist)
    return seen


def test_the_image_installs_every_dependency_at_a_pinned_version():
    pins = {}
    for line in (KUBE.parent / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not pinned with ==: {line}"
            pins[canonicalize_name(name)] = version
    assert set(pins) == runtime_closure()
    dockerfile = (KUBE.parent / "Dockerfile").read_text()
    assert dockerfile.count("-c /tmp/constraints.txt") == 2  # the wheelhouse path and PyPI's
    assert '-c "$ctx/deploy/constraints.txt"' in (KUBE.parent / "build-image.sh").read_text()
