"""Read deploy/k8s the way kustomize would, far enough for offline checks (no kustomize here).

:func:`build` follows a kustomization's ``resources`` (files and directories), applies its
``namespace`` to what it lists (not to what its sub-kustomizations already placed), and turns
each ``configMapGenerator`` into a ConfigMap object (no hash suffix is computed: a hashed
generator's name is kept as is, and kustomize rewrites the references to it consistently).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
ENTRY_POINTS = (K8S, K8S / "istio")
KUSTOMIZATION = "kustomization.yaml"
#: Kinds Kubernetes' schemas do not have: validated structurally by tests/support/istio.py.
ISTIO_KINDS = {"EnvoyFilter", "VirtualService", "Gateway"}
CLUSTER_SCOPED = {"Namespace"}

Obj = dict[str, Any]


@dataclass
class Build:
    """The objects of one kustomization, with where each came from."""

    objects: list[Obj] = field(default_factory=list)
    sources: list[Path] = field(default_factory=list)
    generated: dict[str, dict[str, Path]] = field(default_factory=dict)  # name -> key -> file
    hashed: set[str] = field(default_factory=set)  # generated names kustomize would suffix
    images: list[dict[str, str]] = field(default_factory=list)

    def named(self, kind: str, name: str) -> Obj:
        found = [o for o in self.objects if o["kind"] == kind and o["metadata"]["name"] == name]
        if len(found) != 1:
            raise AssertionError(f"{len(found)} objects {kind}/{name}, want exactly one")
        return found[0]

    def of_kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]


def load_yaml_documents(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def kustomization(directory: Path) -> Obj:
    data: Obj = yaml.safe_load((directory / KUSTOMIZATION).read_text(encoding="utf-8"))
    return data


def generator_files(entry: Obj) -> dict[str, str]:
    """key -> relative path of a configMapGenerator entry (``key=path`` or ``path``)."""
    out: dict[str, str] = {}
    for item in entry.get("files", []):
        key, sep, path = item.partition("=")
        out[key if sep else Path(item).name] = path if sep else item
    return out


def build(directory: Path) -> Build:
    result = Build()
    spec = kustomization(directory)
    own: list[Obj] = []
    for ref in spec.get("resources", []):
        target = (directory / ref).resolve()
        if target.is_dir():
            sub = build(target)
            result.objects += sub.objects
            result.sources += sub.sources
            result.generated.update(sub.generated)
            result.hashed |= sub.hashed
            result.images += sub.images
        else:
            result.sources.append(target)
            own += load_yaml_documents(target)
    for entry in spec.get("configMapGenerator", []):
        files = {k: directory / p for k, p in generator_files(entry).items()}
        result.generated[entry["name"]] = files
        if not entry.get("options", {}).get("disableNameSuffixHash", False):
            result.hashed.add(entry["name"])
        data = {key: path.read_text(encoding="utf-8") for key, path in files.items()}
        own.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": entry["name"]},
                "data": data,
            }
        )
    namespace = spec.get("namespace")
    for obj in own:
        if namespace and obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = namespace
    result.objects += own
    result.images += spec.get("images", [])
    return result


def pod_spec(obj: Obj) -> Obj | None:
    if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
        spec: Obj = obj["spec"]["template"]["spec"]
        return spec
    return None


def containers(spec: Obj) -> Iterator[Obj]:
    """Every container of a pod spec, native sidecars (init containers) included."""
    yield from spec.get("initContainers", [])
    yield from spec.get("containers", [])


def workloads(result: Build) -> Iterator[tuple[Obj, Obj]]:
    """(workload object, its pod spec) for every workload."""
    for obj in result.objects:
        spec = pod_spec(obj)
        if spec is not None:
            yield obj, spec


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def pods_selected(result: Build, namespace: str, selector: dict[str, str]) -> list[Obj]:
    """Workloads in ``namespace`` whose pod template labels match ``selector``."""
    return [
        obj
        for obj, _ in workloads(result)
        if obj["metadata"].get("namespace") == namespace
        and selects(selector, obj["spec"]["template"]["metadata"]["labels"])
    ]


def every_yaml() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml"))


def examples() -> list[Obj]:
    """The objects of the ``*.example.yaml`` files: validated, never applied by kustomize."""
    return [
        obj for path in sorted(K8S.rglob("*.example.yaml")) for obj in load_yaml_documents(path)
    ]


def container(build: Build, workload: str, name: str) -> Obj:
    spec = pod_spec(build.named("Deployment", workload))
    assert spec is not None
    (found,) = [c for c in containers(spec) if c["name"] == name]
    return found


def flag(args: list[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"{name}=")]
    assert len(values) == 1, f"{name} once, as {name}=VALUE, in {args}"
    return values[0]


def mounted_file(build: Build, workload: str, path: str) -> Path:
    """The repository file that ``path`` in the workload's containers is (via a ConfigMap)."""
    spec = pod_spec(build.named("Deployment", workload))
    assert spec is not None
    volumes = {v["name"]: v for v in spec["volumes"]}
    for c in containers(spec):
        for mount in c.get("volumeMounts", []):
            directory, _, key = path.rpartition("/")
            if mount["mountPath"] == directory and "configMap" in volumes[mount["name"]]:
                return build.generated[volumes[mount["name"]]["configMap"]["name"]][key]
    raise AssertionError(f"{workload}: {path} is not a file of a mounted ConfigMap")
