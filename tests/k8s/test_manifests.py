"""Offline tests of the Kubernetes manifests: render every overlay, validate it
against the Kubernetes 1.34 OpenAPI schemas, and enforce the policies."""

from __future__ import annotations

import base64
import copy
import hashlib
import pathlib
import re
import subprocess

import kubernetes_validate
import pytest
import yaml

import policy

ROOT = pathlib.Path(__file__).resolve().parents[2]
OVERLAYS = ["minikube", "production", "local"]
KUBERNETES_VERSION = "1.34.0"


def render(overlay: str) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / "k8s/overlays" / overlay)], check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="module", params=OVERLAYS)
def docs(request):
    return render(request.param)


@pytest.fixture(scope="module")
def minikube():
    return render("minikube")


# Every policy check; test_chart.py runs them on the chart's render too.
POLICY_CHECKS = [policy.check_resources, policy.check_probes, policy.check_security, policy.check_images,
                 policy.check_configmap_sizes, policy.check_labels, policy.check_addresses, policy.check_rollout]


def validate(docs):
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_renders_and_validates_against_the_schemas(docs):
    assert {d["kind"] for d in docs} >= {"Deployment", "StatefulSet", "Job", "Role", "RoleBinding", "ServiceAccount", "Service", "ConfigMap", "LimitRange", "ResourceQuota", "NetworkPolicy", "PodDisruptionBudget"}
    validate(docs)


@pytest.mark.parametrize("check", POLICY_CHECKS)
def test_policy(docs, check):
    assert check(docs) == []


CLUSTER_SCOPED = {"PersistentVolume", "Namespace"}


def test_every_object_is_in_the_lab8_namespace(docs):
    """What an overlay adds on top of another (the local overlay's HPAs) lands
    in the namespace too, not in `default`."""
    assert [(d["kind"], d["metadata"]["name"]) for d in docs
            if d["kind"] not in CLUSTER_SCOPED and d["metadata"].get("namespace") != "lab8"] == []


def test_every_service_has_a_deployment_and_redis_a_statefulset(minikube):
    kinds = {(d["kind"], d["metadata"]["name"]) for d in minikube}
    for name in ("lab8-source", "lab8-mart", "lab8-model"):
        assert ("Deployment", name) in kinds and ("Service", name) in kinds and ("PodDisruptionBudget", name) in kinds
    assert ("StatefulSet", "lab8-redis") in kinds


def find(docs, kind, prefix):
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(prefix))


def test_model_zip_shipped_as_configmap_and_unpacked_by_the_model_image(minikube):
    cm = find(minikube, "ConfigMap", "lab8-model-artifact-")
    assert list(cm["binaryData"]) == ["model-lab5-1.0.0.zip"]
    model = find(minikube, "Deployment", "lab8-model")
    spec = policy.pod_spec(model)
    unpack = spec["initContainers"][0]
    assert unpack["image"].split(":")[0] == spec["containers"][0]["image"].split(":")[0] == "lab8/model"
    assert unpack["args"] == ["unpack", "/model-zip/model-lab5-1.0.0.zip", "/opt/model"]
    assert {"name": "model", "mountPath": "/opt/model", "readOnly": True} in spec["containers"][0]["volumeMounts"]
    assert policy.config_env(minikube)["MODEL_DIR"] == "/opt/model"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["model-zip"]["configMap"]["name"] == cm["metadata"]["name"]
    assert "emptyDir" in volumes["model"]


def test_committed_artifact_is_the_one_kustomize_ships():
    dist = (ROOT / "dist/model-lab5-1.0.0.zip").read_bytes()
    shipped = (ROOT / "k8s/base/config/model-lab5-1.0.0.zip").read_bytes()
    assert hashlib.sha256(dist).hexdigest() == hashlib.sha256(shipped).hexdigest(), "run `make model-sync`"
    assert len(dist) < policy.CLIENT_SIDE_APPLY_LIMIT, "above 256 KiB: document kubectl apply --server-side"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rollout_order_source_mart_model(overlay):
    """The mart waits for the source's rollout, the model for the mart's, with a
    token that may only read those two Deployments; the apply order writes an
    upstream's spec before its downstream's (fifo, source → mart → model)."""
    docs = render(overlay)
    mart = policy.pod_spec(find(docs, "Deployment", "lab8-mart"))
    model = policy.pod_spec(find(docs, "Deployment", "lab8-model"))
    assert mart["initContainers"][-1]["args"] == ["wait-rollout", "lab8-source"]
    assert model["initContainers"][-1]["args"] == ["wait-rollout", "lab8-mart"]
    assert mart["initContainers"][-1]["image"].split(":")[0] == "lab8/kubectl"
    assert policy.pod_spec(find(docs, "Deployment", "lab8-source")).get("initContainers", []) == []
    deployments = [d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"]
    assert deployments == ["lab8-source", "lab8-mart", "lab8-model"]
    role = find(docs, "Role", "lab8-rollout-order")
    assert role["rules"] == [{"apiGroups": ["apps"], "resources": ["deployments"],
                              "resourceNames": ["lab8-source", "lab8-mart"], "verbs": ["get", "list", "watch"]}]
    for spec in (mart, model):
        assert spec["serviceAccountName"] == "lab8-rollout-order" and spec["automountServiceAccountToken"] is False
    # Nothing a pod mounts is applied after it.
    index = {(d["kind"], d["metadata"]["name"]): i for i, d in enumerate(docs)}
    for doc in policy.workloads(docs):
        for volume in policy.pod_spec(doc).get("volumes", []):
            if "configMap" in volume:
                assert index[("ConfigMap", volume["configMap"]["name"])] < index[(doc["kind"], doc["metadata"]["name"])]


def strings(node):
    """Every string inside a manifest (values of ConfigMaps, args, env, …)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def test_redis_secret_persistence_and_memory(minikube):
    config = find(minikube, "ConfigMap", "lab8-redis-config-")["data"]["redis.conf"]
    assert "requirepass" not in config.replace("include /run/secrets/lab8-redis/redis-auth.conf", "")
    lines = [l.strip() for l in config.splitlines()]
    assert "appendonly yes" in lines and "appendfsync always" in lines and "maxmemory-policy noeviction" in lines
    maxmemory = policy.quantity(next(l.split()[1] for l in config.splitlines() if l.startswith("maxmemory ")).replace("mb", "Mi"))
    redis = find(minikube, "StatefulSet", "lab8-redis")
    limit = policy.quantity(policy.pod_spec(redis)["containers"][0]["resources"]["limits"]["memory"])
    assert maxmemory < 0.8 * limit
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_is_committed_the_cluster_makes_them(overlay):
    """No Secret is rendered (nothing secret in the repository or generated
    before an apply); the secrets Job makes Secret lab8-redis (the admin
    password, Redis alone mounts it), lab8-redis-users (a password per ACL
    user) and lab8-api-token (the token source and model mount), keeps
    existing ones, and may only create Secrets and read and label those
    three."""
    docs = render(overlay)
    assert not [d for d in docs if d["kind"] == "Secret"], "a Secret in the manifests: its value would be committed"
    for doc in docs:
        assert not any(re.search(r"(?m)^\s*requirepass\s+\S", text) for text in strings(doc)), doc["metadata"]["name"]
    job = find(docs, "Job", "lab8-secrets")
    script = "\n".join(policy.pod_spec(job)["containers"][0]["command"])
    assert 'kubectl get secret "$name"' in script, "an existing Secret is kept"
    for made in ("/work/lab8-redis.password", "/work/lab8-redis.redis-auth.conf", "/work/lab8-api-token.token"):
        assert made in script
    assert "requirepass %s" in script and "make lab8-redis\n" in script and "make lab8-api-token" in script
    assert f"for user in {' '.join(acl_users())}; do random 24 >/work/lab8-redis-users.$user; done\nmake lab8-redis-users" in script
    mounted = {v["secret"]["secretName"] for d in docs if d["kind"] in ("Deployment", "StatefulSet")
               for v in policy.pod_spec(d).get("volumes", []) if "secret" in v}
    assert mounted == {"lab8-redis", "lab8-redis-users", "lab8-api-token"}
    role = find(docs, "Role", "lab8-secrets")
    rules = {(tuple(r.get("resourceNames", [])), tuple(r["verbs"])) for r in role["rules"]}
    assert rules == {((), ("create",)), (("lab8-redis", "lab8-redis-users", "lab8-api-token"), ("get", "patch"))}
    assert all(r["resources"] == ["secrets"] and r["apiGroups"] == [""] for r in role["rules"])
    assert policy.pod_spec(job)["serviceAccountName"] == "lab8-secrets"


def has_sentinels(docs):
    return any(c["name"] == "sentinel" for c in policy.pod_spec(find(docs, "StatefulSet", "lab8-redis"))["containers"])


@pytest.mark.parametrize("overlay, sentinels", [("minikube", False), ("local", True), ("production", True)])
def test_redis_under_sentinel_where_the_overlay_says(overlay, sentinels):
    """local and production run three Redis pods, each with a Sentinel; the
    services follow the primary through all three and the source waits for a
    replica; the pods reach each other on 6379 and 26379. minikube keeps one
    Redis."""
    docs = render(overlay)
    redis = find(docs, "StatefulSet", "lab8-redis")
    assert has_sentinels(docs) == sentinels
    assert redis["spec"]["replicas"] == (3 if sentinels else 1)
    quota = find(docs, "ResourceQuota", "lab8-quota")["spec"]["hard"]
    assert int(quota["persistentvolumeclaims"]) >= redis["spec"]["replicas"]
    for component in ("source", "mart", "model"):
        env = {e["name"]: e.get("value") for e in policy.pod_spec(find(docs, "Deployment", f"lab8-{component}"))["containers"][0]["env"]}
        assert ("REDIS_SENTINELS" in env) == sentinels
        if sentinels:
            assert env["REDIS_SENTINELS"].split(",") == [f"lab8-redis-{i}.lab8-redis-headless:26379" for i in range(3)]
            assert env["REDIS_SENTINEL_PASSWORD_FILE"] == "/run/secrets/lab8-redis-sentinel/password"
            assert env.get("REDIS_WAIT_REPLICAS") == ("1" if component == "source" else None)
    if not sentinels:
        return
    spec = policy.pod_spec(redis)
    assert [c["command"] for c in spec["containers"]] == [["sh", "/etc/redis/redis-ha.sh", "redis"], ["sh", "/etc/redis/redis-ha.sh", "sentinel"]]
    assert all({"name": "REDIS_HA_REPLICAS", "value": "3"} in c["env"] for c in spec["containers"])
    headless = find(docs, "Service", "lab8-redis-headless")["spec"]
    assert headless["publishNotReadyAddresses"] and {"name": "sentinel", "port": 26379, "targetPort": "sentinel"} in headless["ports"]
    script = find(docs, "ConfigMap", "lab8-redis-config-")["data"]["redis-ha.sh"]
    assert "sentinel monitor $MASTER $primary 6379 2" in script and "min-replicas-to-write 1" in script
    within = find(docs, "NetworkPolicy", "lab8-redis-sentinel")["spec"]
    ports = lambda rule: sorted(p["port"] for p in rule["ports"])
    assert [ports(r) for r in within["ingress"]] == [[6379, 26379], [26379]] and ports(within["egress"][0]) == [6379, 26379]


def acl_users():
    """The users of redis-users.acl (generated from lab8_protocol::acl), in its order."""
    text = (ROOT / "k8s/base/config/redis-users.acl").read_text()
    return [line.split()[0] for line in text.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_logs_in_as_its_own_acl_user(overlay):
    """A service connects as its own user and mounts that user's password
    alone; Redis mounts them all and starts through redis-start.sh, which
    reads the users from the same ConfigMap; the admin password stays in
    the Redis pod."""
    docs = render(overlay)
    assert acl_users() == ["lab8-source", "lab8-mart", "lab8-model", "lab8-tester"]
    for component in ("source", "mart", "model"):
        spec = policy.pod_spec(find(docs, "Deployment", f"lab8-{component}"))
        env = {e["name"]: e.get("value") for e in spec["containers"][0].get("env", [])}
        assert env["REDIS_USERNAME"] == f"lab8-{component}"
        secrets = [v["secret"] for v in spec["volumes"] if v["name"] == "redis-secret"]
        assert secrets == [{"secretName": "lab8-redis-users", "items": [{"key": f"lab8-{component}", "path": "password"}], "defaultMode": 0o440}]
    assert policy.config_env(docs)["REDIS_PASSWORD_FILE"] == "/run/secrets/lab8-redis/password"
    redis = policy.pod_spec(find(docs, "StatefulSet", "lab8-redis"))
    files = find(docs, "ConfigMap", "lab8-redis-config-")["data"]
    assert redis["containers"][0]["command"] in (["sh", "/etc/redis/redis-start.sh"], ["sh", "/etc/redis/redis-ha.sh", "redis"])
    assert "exec sh /etc/redis/redis-start.sh --include /tmp/redis-ha.conf" in files["redis-ha.sh"]
    assert files["redis-users.acl"] == (ROOT / "k8s/base/config/redis-users.acl").read_text()
    assert "/etc/redis/redis-users.acl" in files["redis-start.sh"] and "/run/secrets/lab8-redis-users/$user" in files["redis-start.sh"]
    mounts = {m["mountPath"]: m["name"] for m in redis["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in redis["volumes"]}
    assert volumes[mounts["/run/secrets/lab8-redis-users"]]["secret"] == {"secretName": "lab8-redis-users", "defaultMode": 0o440}


def test_write_apis_take_their_token_from_the_secret(minikube):
    """source and model read the bearer token from the mounted Secret; the mart has none."""
    for name, has_token in (("lab8-source", True), ("lab8-model", True), ("lab8-mart", False)):
        spec = policy.pod_spec(find(minikube, "Deployment", name))
        mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        assert ("api-token" in mounts) == has_token, name
    assert policy.config_env(minikube)["API_TOKEN_FILE"] == "/run/secrets/lab8-api/token"


def test_only_lab8_services_reach_redis(minikube):
    netpol = find(minikube, "NetworkPolicy", "lab8-redis")
    allowed = netpol["spec"]["ingress"][0]["from"][0]["podSelector"]["matchExpressions"][0]["values"]
    assert sorted(allowed) == ["mart", "model", "source"]
    assert find(minikube, "NetworkPolicy", "lab8-default-deny")["spec"]["policyTypes"] == ["Ingress", "Egress"]


def egress_paths(netpol):
    """(peer, port) pairs a policy lets its pods open; peer "any" when unrestricted."""
    paths = set()
    for rule in netpol["spec"].get("egress", []):
        peers = [yaml.safe_dump(p, sort_keys=True) for p in rule.get("to", [])] or ["any"]
        for peer in peers:
            for port in rule.get("ports", [{}]):
                paths.add((peer, f'{port.get("port", "all")}/{port.get("protocol", "TCP")}'))
    return paths


@pytest.mark.parametrize("service, port, talks_to_api", [("source", 8080, False), ("mart", 8081, True), ("model", 8082, True)])
def test_network_policies_declare_every_path(docs, service, port, talks_to_api):
    """Each service opens connections to Redis and DNS alone (mart and model
    also to the API server, for their rollout wait), and admits lab8.io/client
    pods and monitoring namespaces to its port alone; the default policy
    denies everything else both ways; Redis opens nothing."""
    deny = find(docs, "NetworkPolicy", "lab8-default-deny")["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress", "Egress"]
    netpol = find(docs, "NetworkPolicy", f"lab8-{service}")
    peer = lambda p: yaml.safe_dump(p, sort_keys=True)
    In = lambda key, value: {"matchExpressions": [{"key": key, "operator": "In", "values": [value]}]}
    redis = peer({"podSelector": In("app.kubernetes.io/component", "redis")})
    dns = peer({"namespaceSelector": In("kubernetes.io/metadata.name", "kube-system"), "podSelector": In("k8s-app", "kube-dns")})
    api = {("any", f"{p}/TCP") for p in (443, 6443, 8443)} if talks_to_api else set()
    # With Sentinels (redis-sentinel component) also theirs, on the same pods.
    sentinel = {(redis, "26379/TCP")} if has_sentinels(docs) else set()
    assert egress_paths(netpol) == {(redis, "6379/TCP"), (dns, "53/UDP"), (dns, "53/TCP")} | api | sentinel
    [rule] = netpol["spec"]["ingress"]
    assert rule["ports"] == [{"port": port}]
    assert rule["from"] == [{"namespaceSelector": {}, "podSelector": In("lab8.io/client", "true")},
                            {"namespaceSelector": {"matchExpressions": [{"key": "lab8.io/monitoring", "operator": "Exists"}]}}]
    assert "Egress" not in find(docs, "NetworkPolicy", "lab8-redis")["spec"]["policyTypes"]


# The smallest node `minikube start` makes by default: 2 CPUs, and 25 % of the
# host's memory clamped to 2,200..6,000 MB (minikube's suggestMemoryAllocation),
# so 2,200 MB on a host with 8 GiB or less. kube-system requests 750m CPU and
# 170 MiB on it (kubeadm's apiserver 250m, controller-manager 200m, scheduler
# 100m, etcd 100m/100Mi, CoreDNS 100m/70Mi). k8s/README states this size.
MINIKUBE_NODE = {"cpu": 2.0, "memory": 2200 * 2**20}
KUBE_SYSTEM_REQUESTS = {"cpu": 0.75, "memory": 170 * 2**20}


def test_minikube_fits_minikubes_default_node_with_surge(minikube):
    for resource in ("cpu", "memory"):
        free = MINIKUBE_NODE[resource] - KUBE_SYSTEM_REQUESTS[resource]
        need = policy.footprint(minikube, resource)
        assert need <= free, f"requests.{resource} {need} with a surge pod each exceed the {free} left on minikube's default node"
    quota = find(minikube, "ResourceQuota", "lab8-quota")["spec"]["hard"]
    assert policy.quantity(quota["requests.cpu"]) >= policy.footprint(minikube, "cpu")
    assert policy.quantity(quota["requests.memory"]) >= policy.footprint(minikube, "memory")


def test_minikube_quota_admits_the_scale_out_to_three(minikube):
    """The assignment scales mart and model to 3 replicas in the same namespace."""
    quota = find(minikube, "ResourceQuota", "lab8-quota")["spec"]["hard"]
    three = {"lab8-mart": 3, "lab8-model": 3}
    for section in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            need = policy.footprint(minikube, resource, section=section, replicas=three)
            assert policy.quantity(quota[f"{section}.{resource}"]) >= need, f"{section}.{resource}: quota below {need}"
    for resource in ("cpu", "memory"):
        assert policy.footprint(minikube, resource, replicas=three) <= MINIKUBE_NODE[resource] - KUBE_SYSTEM_REQUESTS[resource], \
            f"3 replicas must still fit minikube's default node ({resource})"


def hpa_max(docs):
    return {d["spec"]["scaleTargetRef"]["name"]: d["spec"]["maxReplicas"] for d in docs if d["kind"] == "HorizontalPodAutoscaler"}


@pytest.mark.parametrize("overlay, least", [("production", 3), ("local", 1)])
def test_hpas_own_the_consumers_replicas(overlay, least):
    """The mart and the model scale by their HPAs, which alone set the count
    (no spec.replicas for an apply to reset), and the quota admits their maximum."""
    docs = render(overlay)
    for name in ("lab8-mart", "lab8-model"):
        hpa = find(docs, "HorizontalPodAutoscaler", name)
        assert hpa["spec"]["scaleTargetRef"]["name"] == name
        assert hpa["spec"]["minReplicas"] >= least
        assert "replicas" not in find(docs, "Deployment", name)["spec"]
    quota = find(docs, "ResourceQuota", "lab8-quota")["spec"]["hard"]
    for section in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            need = policy.footprint(docs, resource, section=section, replicas=hpa_max(docs))
            assert policy.quantity(quota[f"{section}.{resource}"]) >= need, f"{overlay} {section}.{resource}: quota below {need}"


def test_no_deprecated_kustomize_fields():
    for path in (ROOT / "k8s").rglob("kustomization.yaml"):
        text = yaml.safe_load(path.read_text())
        for field in ("commonLabels", "bases", "patchesStrategicMerge", "vars", "patchesJson6902"):
            assert field not in text, f"{path}: {field} is deprecated"


# The checks themselves must catch what they are for.

def mutated(docs, mutate):
    docs = copy.deepcopy(docs)
    mutate(docs)
    return docs


def main_container(docs, name):
    return policy.pod_spec(find(docs, "Deployment", name))["containers"][0]


def test_checks_catch_violations(minikube):
    assert policy.check_resources(mutated(minikube, lambda d: main_container(d, "lab8-mart")["resources"].pop("limits")))
    assert policy.check_resources(mutated(minikube, lambda d: policy.pod_spec(find(d, "Deployment", "lab8-model"))["initContainers"][0].pop("resources")))
    assert policy.check_probes(mutated(minikube, lambda d: main_container(d, "lab8-source").pop("livenessProbe")))
    assert policy.check_security(mutated(minikube, lambda d: main_container(d, "lab8-model")["securityContext"].update(readOnlyRootFilesystem=False)))
    assert policy.check_security(mutated(minikube, lambda d: policy.pod_spec(find(d, "Deployment", "lab8-mart")).pop("automountServiceAccountToken")))
    # The secrets Job's token is allowed only while a RoleBinding grants its account rights.
    unbound = lambda d: d.remove(find(d, "RoleBinding", "lab8-secrets"))
    assert policy.check_security(mutated(minikube, unbound)) == ["Job/lab8-secrets: service-account token mounted"]
    assert policy.check_images(mutated(minikube, lambda d: main_container(d, "lab8-mart").update(image="lab8/mart:latest")))
    assert policy.check_images(mutated(minikube, lambda d: main_container(d, "lab8-mart").update(image="lab8/mart")))
    big = lambda d: find(d, "ConfigMap", "lab8-model-artifact-")["binaryData"].update({"model-lab5-1.0.0.zip": "A" * (policy.CONFIGMAP_LIMIT + 1)})
    assert policy.check_configmap_sizes(mutated(minikube, big))
    assert policy.check_addresses(mutated(minikube, lambda d: find(d, "Service", "lab8-redis")["metadata"].update(name="redis")))
    token_in_service = lambda d: main_container(d, "lab8-mart")["volumeMounts"].append({"name": "rollout-order-token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"})
    assert policy.check_security(mutated(minikube, token_in_service)) == ["Deployment/lab8-mart mart: mounts the token volume rollout-order-token"]
    wrong_wait = lambda d: policy.pod_spec(find(d, "Deployment", "lab8-mart"))["initContainers"][0].update(args=["wait-rollout", "lab8-src"])
    assert policy.check_addresses(mutated(minikube, wrong_wait))
    unbound_order = lambda d: d.remove(find(d, "RoleBinding", "lab8-rollout-order"))
    assert len(policy.check_security(mutated(minikube, unbound_order))) == 2
    assert policy.check_rollout(mutated(minikube, lambda d: find(d, "Deployment", "lab8-source")["spec"]["strategy"]["rollingUpdate"].update(maxUnavailable=1)))
    assert policy.check_labels(mutated(minikube, lambda d: find(d, "Service", "lab8-mart")["metadata"]["labels"].pop("app.kubernetes.io/part-of")))
    assert policy.check_labels(mutated(minikube, lambda d: find(d, "Deployment", "lab8-model")["spec"]["template"]["metadata"]["labels"].pop("app.kubernetes.io/version")))
    # A typo in both the Role and the wait would make the wait return at once: caught.
    def typo_everywhere(d):
        policy.pod_spec(find(d, "Deployment", "lab8-mart"))["initContainers"][0].update(args=["wait-rollout", "lab8-src"])
        find(d, "Role", "lab8-rollout-order")["rules"][0]["resourceNames"].append("lab8-src")
    assert policy.check_addresses(mutated(minikube, typo_everywhere))


def test_versions_agree_with_the_workspace(docs):
    version = next(l.split('"')[1] for l in (ROOT / "Cargo.toml").read_text().splitlines() if l.startswith("version = "))
    for doc in docs:
        labels = doc["metadata"].get("labels", {})
        if "app.kubernetes.io/version" in labels:
            assert labels["app.kubernetes.io/version"] == version, policy.where(doc)
    for doc in policy.workloads(docs):
        for _, c in policy.all_containers(doc):
            assert c["image"].endswith(":" + version), f"{policy.where(doc, c)}: {c['image']}"
