"""The Helm chart (charts/lab8) against the primary form, the kustomize
minikube overlay: the same objects, byte for byte after the differences that
are the point of each tool (hash suffixes vs checksum annotations, the
secrets Job vs Secrets kept by Helm); the same schema and policy checks."""

from __future__ import annotations

import base64
import copy
import hashlib
import os
import re
import subprocess

import pytest
import yaml

import policy
from test_manifests import KUBERNETES_VERSION, POLICY_CHECKS, ROOT, find, render, validate

CHART = ROOT / "charts/lab8"
HELM = os.environ.get("HELM", "helm")
HASH_SUFFIX = re.compile(r"^(lab8-(?:config|redis-config|model-artifact))-[a-z0-9]{10}$")


def helm_template(*args: str) -> list[dict]:
    out = subprocess.run([HELM, "template", "lab8", str(CHART), "-n", "lab8", "--kube-version", KUBERNETES_VERSION, *args],
                         check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="module")
def chart():
    return helm_template()


def normalised(docs: list[dict], drop: set[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    """Objects by (kind, name) without what differs by design."""
    out = {}
    for doc in copy.deepcopy(docs):
        meta = doc["metadata"]
        meta["name"] = HASH_SUFFIX.sub(r"\1", meta["name"])
        if (doc["kind"], meta["name"]) in drop:
            continue
        meta.pop("namespace", None)
        for key, value in doc.get("binaryData", {}).items():  # kustomize wraps base64 lines
            doc["binaryData"][key] = "".join(value.split())
        meta.pop("annotations", None)
        for labels in label_maps(doc):
            labels.pop("app.kubernetes.io/managed-by", None)
            labels.pop("helm.sh/chart", None)
        if doc["kind"] in policy.WORKLOADS:
            doc["spec"]["template"]["metadata"].pop("annotations", None)
            for volume in policy.pod_spec(doc).get("volumes", []):
                if "configMap" in volume:
                    volume["configMap"]["name"] = HASH_SUFFIX.sub(r"\1", volume["configMap"]["name"])
            for _, c in policy.all_containers(doc):
                for source in c.get("envFrom", []):
                    source["configMapRef"]["name"] = HASH_SUFFIX.sub(r"\1", source["configMapRef"]["name"])
        out[(doc["kind"], meta["name"])] = doc
    return out


def label_maps(doc):
    yield doc["metadata"].setdefault("labels", {})
    if doc["kind"] in policy.WORKLOADS:
        yield doc["spec"]["template"]["metadata"].setdefault("labels", {})
    for claim in doc.get("spec", {}).get("volumeClaimTemplates", []):
        yield claim["metadata"].setdefault("labels", {})


# What only one side has, on purpose.
# The users of files/redis-users.acl (generated from lab8_protocol::acl), in its order.
ACL_USERS = ["lab8-source", "lab8-mart", "lab8-model", "lab8-tester"]
ONLY_KUSTOMIZE = {("Namespace", "lab8"), ("Job", "lab8-secrets"), ("ServiceAccount", "lab8-secrets"),
                  ("Role", "lab8-secrets"), ("RoleBinding", "lab8-secrets"), ("NetworkPolicy", "lab8-secrets")}
ONLY_HELM = {("Secret", "lab8-redis"), ("Secret", "lab8-redis-users"), ("Secret", "lab8-api-token")}


def test_helm_lint():
    subprocess.run([HELM, "lint", "--strict", str(CHART), "--kube-version", KUBERNETES_VERSION], check=True, capture_output=True)


def test_same_objects_as_the_minikube_overlay(chart):
    """Every object compared whole: images, env, resources, probes, security
    contexts, volumes, policies, labels, selectors."""
    ours = normalised(chart, ONLY_HELM)
    theirs = normalised(render("minikube"), ONLY_KUSTOMIZE)
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        assert ours[key] == theirs[key], key


def test_parity_check_catches_drift(chart):
    """The comparison fails on a one-field drift of either side."""
    drifted = copy.deepcopy(chart)
    policy.pod_spec(find(drifted, "Deployment", "lab8-mart"))["containers"][0]["resources"]["limits"]["memory"] = "1Gi"
    assert normalised(drifted, ONLY_HELM)[("Deployment", "lab8-mart")] != normalised(render("minikube"), ONLY_KUSTOMIZE)[("Deployment", "lab8-mart")]
    drifted = helm_template("--set", "config.BATCH_SIZE=1000")
    assert normalised(drifted, ONLY_HELM)[("ConfigMap", "lab8-config")] != normalised(render("minikube"), ONLY_KUSTOMIZE)[("ConfigMap", "lab8-config")]


def test_chart_render_validates_against_the_schemas(chart):
    validate(chart)


@pytest.mark.parametrize("check", POLICY_CHECKS)
def test_policy(chart, check):
    assert check(chart) == []


def test_the_chart_carries_the_artifact_of_dist(chart):
    dist = (ROOT / "dist/model-lab5-1.0.0.zip").read_bytes()
    shipped = base64.b64decode(find(chart, "ConfigMap", "lab8-model-artifact")["binaryData"]["model-lab5-1.0.0.zip"])
    assert hashlib.sha256(shipped).hexdigest() == hashlib.sha256(dist).hexdigest(), "run `make model-sync`"
    model = find(chart, "Deployment", "lab8-model")
    assert model["spec"]["template"]["metadata"]["annotations"]["checksum/model"] == hashlib.sha256(dist).hexdigest()


def annotations(docs, kind, name):
    return find(docs, kind, name)["spec"]["template"]["metadata"]["annotations"]


def test_checksums_roll_the_pods_on_settings_model_and_secret(chart):
    changed = helm_template("--set", "config.RUST_LOG=debug", "--set", "redis.config=port 6379")
    for name in ("lab8-source", "lab8-mart", "lab8-model"):
        assert annotations(changed, "Deployment", name)["checksum/config"] != annotations(chart, "Deployment", name)["checksum/config"]
    assert annotations(changed, "StatefulSet", "lab8-redis")["checksum/redis-config"] != annotations(chart, "StatefulSet", "lab8-redis")["checksum/redis-config"]
    # Every pod of one render sees the same generated password (and its checksum).
    secret = find(chart, "Secret", "lab8-redis")["data"]
    password = base64.b64decode(secret["password"]).decode()
    assert len(password) == 32 and base64.b64decode(secret["redis-auth.conf"]).decode() == f"requirepass {password}\n"
    assert annotations(chart, "StatefulSet", "lab8-redis")["checksum/redis-secret"] == hashlib.sha256(password.encode()).hexdigest()
    # The ACL users' passwords roll Redis and the services that log in with them.
    users = find(chart, "Secret", "lab8-redis-users")["data"]
    assert list(users) == ACL_USERS and all(len(base64.b64decode(v)) == 32 for v in users.values())
    joined = "\n".join(base64.b64decode(users[u]).decode() for u in ACL_USERS)
    sums = {annotations(chart, kind, name)[key] for kind, name, key in
            [("Deployment", "lab8-source", "checksum/redis-secret"), ("Deployment", "lab8-mart", "checksum/redis-secret"),
             ("Deployment", "lab8-model", "checksum/redis-secret"), ("StatefulSet", "lab8-redis", "checksum/redis-users")]}
    assert sums == {hashlib.sha256(joined.encode()).hexdigest()}


def test_existing_secrets_are_used_and_none_generated():
    docs = helm_template("--set", "redis.existingSecret=my-redis", "--set", "redis.existingUsersSecret=my-users",
                         "--set", "api.existingSecret=my-token")
    assert not [d for d in docs if d["kind"] == "Secret"]
    mounted = {v["secret"]["secretName"] for d in policy.workloads(docs) for v in policy.pod_spec(d)["volumes"] if "secret" in v}
    assert mounted == {"my-redis", "my-users", "my-token"}


def test_api_token_generated_for_source_and_model_only(chart):
    token = base64.b64decode(find(chart, "Secret", "lab8-api-token")["data"]["token"]).decode()
    assert len(token) >= 32
    for name, has_token in (("lab8-source", True), ("lab8-model", True), ("lab8-mart", False)):
        assert ("checksum/api-token" in annotations(chart, "Deployment", name)) == has_token, name
        if has_token:
            assert annotations(chart, "Deployment", name)["checksum/api-token"] == hashlib.sha256(token.encode()).hexdigest()


def test_images_are_full_references_from_the_values():
    docs = helm_template("--set", "source.image=registry.example/lab8/source:2.0.0", "--set", "mart.image=registry.example/lab8/mart:2.0.0",
                         "--set", "model.image=registry.example/lab8/model:2.0.0", "--set", "redis.image=registry.example/lab8/redis:2.0.0")
    images = {c["image"] for d in policy.workloads(docs) for _, c in policy.all_containers(d)}
    assert images == {f"registry.example/lab8/{name}:2.0.0" for name in ("source", "mart", "model", "redis")} | {"lab8/kubectl:1.0.0"}


@pytest.mark.parametrize("stage, deployed", [("1-model", {"lab8-model"}), ("2-source", {"lab8-model", "lab8-source"}),
                                             ("3-mart", {"lab8-model", "lab8-source", "lab8-mart"})])
def test_staged_bring_up_values(stage, deployed):
    docs = helm_template("-f", str(CHART / f"values-stage-{stage}.yaml"))
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"} == deployed
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "Service" and d["metadata"]["name"] != "lab8-redis-headless"} == deployed | {"lab8-redis"}
    assert ("StatefulSet", "lab8-redis") in {(d["kind"], d["metadata"]["name"]) for d in docs}


def test_policies_each_behind_a_value():
    docs = helm_template("--set", "limitRange.enabled=false", "--set", "resourceQuota.enabled=false",
                         "--set", "networkPolicies.enabled=false", "--set", "podDisruptionBudgets.enabled=false")
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"LimitRange", "ResourceQuota", "NetworkPolicy", "PodDisruptionBudget"}
    assert {"Deployment", "StatefulSet", "Service"} <= kinds


def test_deployments_are_applied_upstream_first(chart):
    """helm upgrade updates one object at a time in this order."""
    assert [d["metadata"]["name"] for d in chart if d["kind"] == "Deployment"] == ["lab8-source", "lab8-mart", "lab8-model"]
