"""Policy checks on rendered lab8 manifests: each returns a list of violations."""

from __future__ import annotations

import re
from urllib.parse import urlparse

CONFIGMAP_LIMIT = 1024 * 1024  # etcd's object size limit for a ConfigMap
CLIENT_SIDE_APPLY_LIMIT = 256 * 1024  # last-applied annotation limit: above it use --server-side
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
REQUIRED_LABELS = ["app.kubernetes.io/name", "app.kubernetes.io/component", "app.kubernetes.io/part-of", "app.kubernetes.io/version"]


def workloads(docs):
    return [d for d in docs if d["kind"] in WORKLOADS]


def pod_spec(doc):
    return doc["spec"]["template"]["spec"]


def all_containers(doc):
    spec = pod_spec(doc)
    return [("initContainer", c) for c in spec.get("initContainers", [])] + [("container", c) for c in spec["containers"]]


def where(doc, container=None):
    text = f"{doc['kind']}/{doc['metadata']['name']}"
    return f"{text} {container['name']}" if container else text


def token_volumes(doc):
    """Names of the pod's projected volumes that carry a service-account token."""
    return [v["name"] for v in pod_spec(doc).get("volumes", [])
            if any("serviceAccountToken" in s for s in v.get("projected", {}).get("sources", []))]


def check_resources(docs):
    bad = []
    for doc in workloads(docs):
        for _, c in all_containers(doc):
            resources = c.get("resources", {})
            for section in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in resources.get(section, {}):
                        bad.append(f"{where(doc, c)}: no {section}.{resource}")
    return bad


def check_probes(docs):
    """Long-running workloads only: a Job runs to completion, its exit status is its health."""
    bad = []
    for doc in workloads(docs):
        if doc["kind"] == "Job":
            continue
        for c in pod_spec(doc)["containers"]:
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if probe not in c:
                    bad.append(f"{where(doc, c)}: no {probe}")
    return bad


def check_security(docs):
    bad = []
    # A token only for a service account some RoleBinding of the render grants
    # rights to; mounted into every container only in a Job (the services never get one).
    bound = {s["name"] for d in docs if d["kind"] == "RoleBinding" for s in d["subjects"] if s["kind"] == "ServiceAccount"}
    for doc in workloads(docs):
        spec = pod_spec(doc)
        pod_sc = spec.get("securityContext", {})
        if spec.get("automountServiceAccountToken") is not False and (doc["kind"] != "Job" or spec.get("serviceAccountName") not in bound):
            bad.append(f"{where(doc)}: service-account token mounted")
        # A token projected by hand: a bound account, and only init containers mount it.
        for volume in token_volumes(doc):
            if spec.get("serviceAccountName") not in bound:
                bad.append(f"{where(doc)}: token volume {volume} of an account no RoleBinding grants rights to")
            for kind, c in all_containers(doc):
                if kind == "container" and any(m["name"] == volume for m in c.get("volumeMounts", [])):
                    bad.append(f"{where(doc, c)}: mounts the token volume {volume}")
        if pod_sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            bad.append(f"{where(doc)}: seccomp profile is not RuntimeDefault")
        for _, c in all_containers(doc):
            sc = c.get("securityContext", {})
            if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True):
                bad.append(f"{where(doc, c)}: runAsNonRoot not set")
            if sc.get("readOnlyRootFilesystem") is not True:
                bad.append(f"{where(doc, c)}: root filesystem writable")
            if sc.get("allowPrivilegeEscalation") is not False:
                bad.append(f"{where(doc, c)}: privilege escalation allowed")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                bad.append(f"{where(doc, c)}: capabilities not dropped")
            if sc.get("privileged"):
                bad.append(f"{where(doc, c)}: privileged")
    return bad


def check_images(docs):
    bad = []
    for doc in workloads(docs):
        for _, c in all_containers(doc):
            image = c.get("image", "")
            name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
            if not tag:
                bad.append(f"{where(doc, c)}: image {image!r} has no tag")
            elif tag == "latest":
                bad.append(f"{where(doc, c)}: image {image!r} uses latest")
            if c.get("imagePullPolicy") == "Always":
                bad.append(f"{where(doc, c)}: imagePullPolicy Always (locally built images cannot be pulled)")
    return bad


def check_configmap_sizes(docs):
    bad = []
    for doc in docs:
        if doc["kind"] != "ConfigMap":
            continue
        size = sum(len(v) for v in doc.get("binaryData", {}).values()) + sum(len(v.encode()) for v in doc.get("data", {}).values())
        if size > CONFIGMAP_LIMIT:
            bad.append(f"ConfigMap/{doc['metadata']['name']}: {size} bytes exceeds the 1 MiB limit")
    return bad


def check_labels(docs):
    bad = []
    for doc in docs:
        if doc["kind"] in ("Namespace", "Secret"):
            continue
        labels = doc["metadata"].get("labels", {})
        missing = [l for l in REQUIRED_LABELS[2:] if l not in labels]
        if doc["kind"] in WORKLOADS or doc["kind"] == "Service":
            missing += [l for l in REQUIRED_LABELS[:2] if l not in labels]
        if doc["kind"] in WORKLOADS:
            template_labels = doc["spec"]["template"]["metadata"].get("labels", {})
            missing += [f"template {l}" for l in REQUIRED_LABELS if l not in template_labels]
        if missing:
            bad.append(f"{where(doc)}: missing labels {missing}")
    return bad


def services(docs):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}


def service_answers(docs, host, port):
    """Is there a Service `host` (short name or name.namespace...) exposing `port`?"""
    name = host.split(".")[0]
    svc = services(docs).get(name)
    return svc is not None and any(p["port"] == port for p in svc["spec"]["ports"])


def config_env(docs):
    env = {}
    for d in docs:
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("lab8-config"):
            env.update(d.get("data", {}))
    return env


def account_may_watch(docs, account, deployment):
    """Does a Role bound to `account` grant get and watch on Deployment `deployment`?"""
    roles = {b["roleRef"]["name"] for b in docs if b["kind"] == "RoleBinding"
             for s in b["subjects"] if s["kind"] == "ServiceAccount" and s["name"] == account}
    for role in (d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] in roles):
        for rule in role["rules"]:
            if "deployments" in rule["resources"] and deployment in rule.get("resourceNames", [deployment]) \
                    and {"get", "watch"} <= set(rule["verbs"]):
                return True
    return False


def check_addresses(docs):
    """Every address a service is configured with names a Service and port that exist,
    and every Service selects pods that expose its target port."""
    bad = []
    env = config_env(docs)
    url = urlparse(env.get("REDIS_URL", ""))
    if not service_answers(docs, url.hostname or "", url.port or 6379):
        bad.append(f"REDIS_URL {env.get('REDIS_URL')!r} names no Service")
    for doc in workloads(docs):
        for _, c in all_containers(doc):
            args = c.get("args", [])
            for arg in args[1:] if args[:1] == ["wait-ready"] else []:
                u = urlparse(arg)
                if not service_answers(docs, u.hostname or "", u.port or 80):
                    bad.append(f"{where(doc, c)}: waits for {arg}, which names no Service")
            for name in args[1:] if args[:1] == ["wait-rollout"] else []:
                # A name that matches nothing would make the wait return at once ("not deployed").
                if name not in {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"}:
                    bad.append(f"{where(doc, c)}: waits for deployment {name}, which this render does not have")
                if not account_may_watch(docs, pod_spec(doc).get("serviceAccountName"), name):
                    bad.append(f"{where(doc, c)}: waits for deployment {name}, which its account may not watch")
    for name, svc in services(docs).items():
        selector = svc["spec"].get("selector") or {}
        matches = [w for w in workloads(docs) if selector and all(w["spec"]["template"]["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())]
        if not matches:
            bad.append(f"Service/{name}: selects no workload")
            continue
        ports = {p.get("name") for w in matches for c in pod_spec(w)["containers"] for p in c.get("ports", [])}
        numbers = {p["containerPort"] for w in matches for c in pod_spec(w)["containers"] for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            target = p.get("targetPort", p["port"])
            if target not in ports and target not in numbers:
                bad.append(f"Service/{name}: targetPort {target} is no container port")
    return bad


def check_rollout(docs):
    bad = []
    env = config_env(docs)
    drain = int(env.get("SHUTDOWN_TIMEOUT_SECS", "25"))
    for doc in workloads(docs):
        if doc["kind"] != "Deployment":
            continue
        strategy = doc["spec"].get("strategy", {})
        if strategy.get("type") != "RollingUpdate" or strategy.get("rollingUpdate", {}).get("maxUnavailable") != 0:
            bad.append(f"{where(doc)}: not a RollingUpdate with maxUnavailable 0")
        main = pod_spec(doc)["containers"][0]
        pre_stop = main.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        if pod_spec(doc).get("terminationGracePeriodSeconds", 30) <= drain + pre_stop:
            bad.append(f"{where(doc)}: terminationGracePeriodSeconds not above preStop + SHUTDOWN_TIMEOUT_SECS {drain}")
        consumer = [e for e in main.get("env", []) if e["name"] == "CONSUMER_NAME"]
        if not consumer or consumer[0].get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "metadata.name":
            bad.append(f"{where(doc)}: CONSUMER_NAME not from the pod name")
    return bad


def quantity(value):
    """Kubernetes quantity → float (cores or bytes)."""
    value = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", value)
    number, unit = float(match.group(1)), match.group(2)
    return number * units.get(unit, 1)


def pod_total(doc, section, resource):
    """Effective pod requests or limits: max(largest init container, sum of containers)."""
    spec = pod_spec(doc)
    init = max([quantity(c["resources"][section][resource]) for c in spec.get("initContainers", [])] or [0])
    main = sum(quantity(c["resources"][section][resource]) for c in spec["containers"])
    return max(init, main)


def footprint(docs, resource, surge=True, section="requests", replicas=None):
    """Requests (or limits) of every pod, plus one surge pod per Deployment during a
    rolling update; `replicas` overrides the count of some Deployments by name."""
    total = 0.0
    for doc in workloads(docs):
        count = (replicas or {}).get(doc["metadata"]["name"], doc["spec"].get("replicas", 1))
        extra = 1 if surge and doc["kind"] == "Deployment" else 0
        total += pod_total(doc, section, resource) * (count + extra)
    return total
