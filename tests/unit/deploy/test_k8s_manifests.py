"""deploy/k8s: every manifest passes kubernetes-validate (strict) for the Kubernetes versions
we state; the Istio objects pass structural checks; the kustomizations resolve; and the
objects agree with each other (names, ports, mounts, secrets). What ties the manifests to the
code and the Envoy configs is in test_k8s_wiring.py and test_k8s_envoy.py."""

from __future__ import annotations

import copy
import importlib
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.support import istio, k8s
from tests.support.tools import running_in_ci

#: The version we validate against (and state in docs/fleet.md), plus the newest
#: the schemas know, to catch an API that was removed since. Native sidecar containers and
#: the preStop sleep action need Kubernetes 1.30 or later.
K8S_VERSIONS = ("1.31.0", "1.37.0")
KUBERNETES_VALIDATE = "kubernetes-validate==1.37.0"
KUSTOMIZATIONS = sorted(p.parent for p in k8s.K8S.rglob(k8s.KUSTOMIZATION))
BUILDS = {entry: k8s.build(entry) for entry in k8s.ENTRY_POINTS}


def kubernetes_validate() -> ModuleType:
    try:
        return importlib.import_module("kubernetes_validate.utils")
    except ImportError:
        message = f"kubernetes-validate is not installed: pip install '{KUBERNETES_VALIDATE}'"
        if running_in_ci():
            pytest.fail(f"{message} (the dev extra; required under CI)")
        pytest.skip(message)


def rel(path: Path) -> str:
    return str(path.relative_to(k8s.ROOT))


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=rel)
def test_kustomization_references_resolve(directory: Path) -> None:
    spec = k8s.kustomization(directory)
    assert spec["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert spec["kind"] == "Kustomization"
    for ref in spec.get("resources", []):
        target = directory / ref
        assert target.is_file() or (target / k8s.KUSTOMIZATION).is_file(), f"{ref}: not found"
    for entry in spec.get("configMapGenerator", []):
        for path in k8s.generator_files(entry).values():
            file = (directory / path).resolve()
            assert file.is_file(), f"{entry['name']}: {path} not found"
            # kustomize's default load restrictor refuses files outside the kustomization.
            assert file.is_relative_to(directory.resolve()), f"{path}: outside {directory}"


def test_every_yaml_file_is_used_by_a_kustomization() -> None:
    used = {k8s.K8S / k8s.KUSTOMIZATION}
    for build in BUILDS.values():
        used |= set(build.sources)
        used |= {p.resolve() for files in build.generated.values() for p in files.values()}
    used |= {d / k8s.KUSTOMIZATION for d in KUSTOMIZATIONS}
    used |= set(k8s.K8S.rglob("*.example.yaml"))  # validated below, applied by hand
    orphans = [rel(p) for p in k8s.every_yaml() if p.resolve() not in used]
    assert not orphans, f"not reached from {[rel(e) for e in k8s.ENTRY_POINTS]}: {orphans}"


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("entry", k8s.ENTRY_POINTS, ids=rel)
def test_every_object_passes_kubernetes_validate_strict(entry: Path, version: str) -> None:
    kv = kubernetes_validate()
    checked = 0
    for obj in [*BUILDS[entry].objects, *k8s.examples()]:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in k8s.ISTIO_KINDS:
            assert istio.check(obj) == [], name
            continue
        try:
            kv.validate(obj, version, strict=True)
        except kv.SchemaNotFoundError as exc:
            pytest.fail(f"{name}: {exc.message}")
        except kv.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{name} against {version}: {path}: {exc.message}")
        checked += 1
    assert checked >= 10


def test_strict_validation_would_catch_an_unknown_field() -> None:
    kv = kubernetes_validate()
    deployment = BUILDS[k8s.K8S].named("Deployment", "tts-gateway")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 3}}
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, K8S_VERSIONS[0], strict=True)


@pytest.mark.parametrize("entry", k8s.ENTRY_POINTS, ids=rel)
def test_volumes_secrets_and_images_resolve(entry: Path) -> None:
    build = BUILDS[entry]
    configmaps = {o["metadata"]["name"] for o in build.of_kind("ConfigMap")}
    secrets = {o["metadata"]["name"]: o for o in k8s.examples() if o["kind"] == "Secret"}
    images = {i["name"] for i in build.images}
    for obj, spec in k8s.workloads(build):
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for volume in volumes.values():
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps, volume
        for container in k8s.containers(spec):
            where = f"{obj['metadata']['name']}/{container['name']}"
            assert container["image"] in images, f"{where}: image not set by kustomize"
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{where}: {mount['name']}"
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    secret = secrets[ref["name"]]
                    assert ref["key"] in secret["stringData"], f"{where}: {env['name']}"


@pytest.mark.parametrize("entry", k8s.ENTRY_POINTS, ids=rel)
def test_selectors_and_targets_find_their_pods(entry: Path) -> None:
    build = BUILDS[entry]
    for service in build.of_kind("Service"):
        namespace, selector = service["metadata"]["namespace"], service["spec"]["selector"]
        pods = k8s.pods_selected(build, namespace, selector)
        if service["metadata"]["name"] in ("tts-v1", "tts-v2"):
            assert pods == [], "the model Services select the model pods, which are not ours"
            continue
        assert pods, f"Service {service['metadata']['name']} selects no pod"
        names = {
            p["name"]
            for obj in pods
            for c in k8s.containers(k8s.pod_spec(obj) or {})
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in names | {port["port"]}, port
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for obj in build.of_kind(kind):
            spec = obj["spec"]
            selector = spec.get("selector", spec.get("podSelector", {}))["matchLabels"]
            assert k8s.pods_selected(build, obj["metadata"]["namespace"], selector), obj
    for hpa in build.of_kind("HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        workload = build.named(target["kind"], target["name"])
        assert "replicas" not in workload["spec"], "the HPA owns the replica count"


def test_configmaps_are_mounted_as_directories_never_subpath() -> None:
    """A subPath mount is a copy the kubelet never updates: the rules would never reload."""
    for build in BUILDS.values():
        for obj, spec in k8s.workloads(build):
            configmap_volumes = {v["name"] for v in spec.get("volumes", []) if "configMap" in v}
            for container in k8s.containers(spec):
                for mount in container.get("volumeMounts", []):
                    if mount["name"] in configmap_volumes:
                        assert "subPath" not in mount, (obj["metadata"]["name"], mount)
                        assert mount.get("readOnly") is True, mount


def test_rules_update_in_place_while_envoy_and_policy_changes_roll_pods() -> None:
    build = BUILDS[k8s.K8S]
    assert "tts-canary-rules" not in build.hashed  # same name: the kubelet updates the mount
    assert {"tts-gateway-envoy", "tts-canary-policy"} <= build.hashed  # new name: new pods


def test_the_secret_is_an_example_with_empty_placeholders() -> None:
    """Never applied by kustomize (an apply would reset the real one), and empty so nothing
    can run with a secret from the repository: without a token the controller refuses to
    start off loopback; without a hash key each sidecar uses a random one."""
    for build in BUILDS.values():
        assert build.of_kind("Secret") == []
    (secret,) = [o for o in k8s.examples() if o["kind"] == "Secret"]
    assert secret["stringData"] == {"admin-token": "", "id-hash-key": ""}
    assert secret["metadata"]["namespace"] == "tts-canary"
    for build in BUILDS.values():
        for _, spec in k8s.workloads(build):
            for container in k8s.containers(spec):
                for env in container.get("env", []):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if ref:  # only the hash key may be missing
                        assert ref.get("optional", False) == (ref["key"] == "id-hash-key")


def test_pods_are_non_root_read_only_and_bounded() -> None:
    for build in BUILDS.values():
        for obj, spec in k8s.workloads(build):
            name = obj["metadata"]["name"]
            assert spec["automountServiceAccountToken"] is False, name
            pod = spec["securityContext"]
            assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, name
            assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
            for container in k8s.containers(spec):
                sc = container["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True, (name, container["name"])
                assert sc["allowPrivilegeEscalation"] is False
                assert sc["capabilities"] == {"drop": ["ALL"]}
                for bound in ("requests", "limits"):
                    assert set(container["resources"][bound]) == {"cpu", "memory"}


def test_istio_objects_live_where_istio_reads_them() -> None:
    build = BUILDS[k8s.K8S / "istio"]
    (envoy_filter,) = build.of_kind("EnvoyFilter")
    (gateway,) = build.of_kind("Gateway")
    (service,) = build.of_kind("VirtualService")
    assert envoy_filter["metadata"]["namespace"] == gateway["metadata"]["namespace"]
    selector = envoy_filter["spec"]["workloadSelector"]["labels"]
    assert gateway["spec"]["selector"] == selector
    gateway_ref = f"{gateway['metadata']['namespace']}/{gateway['metadata']['name']}"
    assert service["spec"]["gateways"] == [gateway_ref]
    assert set(service["spec"]["hosts"]) <= set(gateway["spec"]["servers"][0]["hosts"])


def _identity(obj: k8s.Obj) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def _with_images(build: k8s.Build) -> list[k8s.Obj]:
    """The build's objects with kustomize's ``images`` transformation applied."""
    images = {i["name"]: f"{i['newName']}:{i['newTag']}" for i in build.images}
    objects = copy.deepcopy(build.objects)
    for obj in objects:
        spec = k8s.pod_spec(obj)
        for container in k8s.containers(spec or {}):
            container["image"] = images.get(container["image"], container["image"])
    return objects


@pytest.mark.parametrize("entry", k8s.ENTRY_POINTS, ids=rel)
def test_kubectl_kustomize_builds_what_these_tests_check(entry: Path) -> None:
    """Where kubectl is installed, its kustomize must build the same objects as the reader
    the other tests use (the hash suffixes aside), and they must validate as well."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: tests/support/k8s.py alone reads the kustomizations")
    done = subprocess.run(
        [kubectl, "kustomize", str(entry)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout
    build = BUILDS[entry]
    for name in build.hashed:  # kustomize appends a content hash to these names
        text, count = re.subn(rf"\b{re.escape(name)}-[a-z0-9]{{10}}\b", name, text)
        assert count >= 2, f"{name}: the hashed name and a reference to it"
    built = sorted((d for d in yaml.safe_load_all(text) if d), key=_identity)
    assert built == sorted(_with_images(build), key=_identity)
    kv = kubernetes_validate()
    for obj in built:
        if obj["kind"] not in k8s.ISTIO_KINDS:
            kv.validate(obj, K8S_VERSIONS[0], strict=True)
