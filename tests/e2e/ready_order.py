#!/usr/bin/env python3
"""Did the services' new pods become Ready in the order source → mart → model?

  kubectl get pods -o json | ready_order.py TAG

Reads the pods from the API (stdin), keeps the service pods whose main
container runs TAG, and prints for each component when its last new pod
became Ready and when its wait-for-<upstream> init container returned. Exits
1 unless every component has Ready pods at TAG, source was Ready before mart,
mart before model, and each downstream's init container returned only after
its upstream was Ready (it waited, rather than racing it)."""

import datetime
import json
import sys

ORDER = ["source", "mart", "model"]


def when(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def main():
    tag = sys.argv[1]
    ready, waited = {}, {}
    for pod in json.load(sys.stdin)["items"]:
        component = pod["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        if component not in ORDER or pod["metadata"].get("deletionTimestamp"):
            continue
        if not pod["spec"]["containers"][0]["image"].endswith(":" + tag):
            continue
        times = [c["lastTransitionTime"] for c in pod["status"].get("conditions", []) if c["type"] == "Ready" and c["status"] == "True"]
        if not times:
            print(f"{component}: pod {pod['metadata']['name']} at {tag} is not Ready")
            return 1
        ready[component] = max(ready.get(component, when(times[0])), when(times[0]))
        for status in pod["status"].get("initContainerStatuses", []):
            if status["name"].startswith("wait-for-") and "terminated" in status["state"]:
                finished = when(status["state"]["terminated"]["finishedAt"])
                waited[component] = min(waited.get(component, finished), finished)
    for component in ORDER:
        print(f"{component:7} Ready {ready[component].isoformat() if component in ready else '-':26}"
              f" init wait-for-upstream returned {waited[component].isoformat() if component in waited else '-'}")
    if set(ready) != set(ORDER):
        print(f"missing new pods at {tag}: {sorted(set(ORDER) - set(ready))}")
        return 1
    ok = True
    for upstream, downstream in zip(ORDER, ORDER[1:]):
        if not ready[upstream] < ready[downstream]:
            print(f"{downstream} was Ready before {upstream} (or in the same second)")
            ok = False
        if downstream not in waited or waited[downstream] < ready[upstream]:
            print(f"{downstream}'s init container returned before {upstream} was Ready")
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
