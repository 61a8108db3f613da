"""A small renderer of kustomizations, for the features deploy/k8s uses (resources, namespace, labels, images,
patches: strategic merge and JSON 6902), so the manifests' tests run where kubectl is not installed; where it is,
test_k8s_manifests checks that both render the same documents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

Doc = dict[str, Any]
CLUSTER_SCOPED = {"Namespace"}


def _merge(base: Any, patch: Any) -> Any:
    """Strategic merge as kustomize does it for what the overlay patches: maps merge, lists of named maps merge
    by name (env, containers), other values are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = _merge(base[key], value) if key in base else value
        return out
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(x, dict) and "name" in x for x in base + patch)
    ):
        # as kustomize orders them: the patch's items first (merged with the base's), then the base's others
        by_name = {x["name"]: x for x in base}
        out_list = [_merge(by_name[x["name"]], x) if x["name"] in by_name else x for x in patch]
        out_list += [x for x in base if x["name"] not in {p["name"] for p in patch}]
        return out_list
    return patch


def _json_patch(doc: Doc, ops: list[dict[str, Any]]) -> None:
    for op in ops:
        assert op["op"] in ("add", "replace"), op
        *parents, last = op["path"].strip("/").split("/")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if op["op"] == "add":
                node.insert(index, op["value"])
            else:
                node[index] = op["value"]
        else:
            assert op["op"] == "add" or last in node, op
            node[last] = op["value"]


def render(folder: Path) -> list[Doc]:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    known = {"apiVersion", "kind", "namespace", "resources", "labels", "images", "patches"}
    assert set(kustomization) <= known, f"the renderer does not know {set(kustomization) - known}"
    docs: list[Doc] = []
    for entry in kustomization.get("resources", []):
        path = folder / entry
        docs += render(path) if path.is_dir() else [d for d in yaml.safe_load_all(path.read_text()) if d]
    for label in kustomization.get("labels", []):
        assert not label.get("includeSelectors") and not label.get("includeTemplates")
        for doc in docs:
            doc["metadata"].setdefault("labels", {}).update(label["pairs"])
    for doc in docs:
        if "namespace" in kustomization and doc["kind"] not in CLUSTER_SCOPED:
            doc["metadata"]["namespace"] = kustomization["namespace"]
        for image in kustomization.get("images", []):
            for container in containers(doc):
                name, _, _tag = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image['newTag']}"
    for entry in kustomization.get("patches", []):
        patch = yaml.safe_load(entry["patch"])
        for i, doc in enumerate(docs):
            if isinstance(patch, list):  # JSON 6902, applied to the target's matches
                target = entry["target"]
                if target.get("kind", doc["kind"]) == doc["kind"] and target.get("name", key(doc)[1]) == key(doc)[1]:
                    _json_patch(doc, patch)
            elif (doc["kind"], doc["metadata"]["name"]) == (patch["kind"], patch["metadata"]["name"]):
                docs[i] = _merge(doc, patch)
    return docs


def containers(doc: Doc) -> list[dict[str, Any]]:
    spec = pod_spec(doc)
    return [] if spec is None else spec.get("initContainers", []) + spec["containers"]


def pod_spec(doc: Doc) -> dict[str, Any] | None:
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        spec: dict[str, Any] = doc["spec"]["template"]["spec"]
        return spec
    return None


def key(doc: Doc) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}
