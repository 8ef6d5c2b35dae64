#!/usr/bin/env python3
"""Offline checks of deploy/ that no schema catches (used by validate-deploy.sh).

  deploy_checks.py layout DEPLOY_DIR
      Every kustomization.yaml references only files that exist, and every
      other YAML file under deploy/ is referenced by a kustomization. Prints
      the files that are kustomize patches (not whole objects), one a line,
      prefixed with "patch ", and the files configMapGenerator/secretGenerator
      read (data, such as Prometheus rules), prefixed with "data ", so the
      caller can skip them in per-file manifest checks.

  deploy_checks.py refs NAME < rendered.yaml
      Cross-references in one `kustomize build` output: selectors match pod
      labels, Services and probes name ports that exist, ConfigMaps and Secrets
      referenced without `optional: true` exist (or an operator in the output
      makes them: CloudNativePG's `<cluster>-app`), PDB/HPA targets exist.

  deploy_checks.py custom SCHEMA_DIR [--rest OUT] FILE|-
      Objects of custom resources (an apiVersion group with a dot that is not
      *.k8s.io, such as CloudNativePG's postgresql.cnpg.io) that kubernetes-validate
      does not know: each is validated against SCHEMA_DIR/<group>_<version>_<kind>.json
      (JSON Schema 2020-12, unknown fields refused); one with no schema there is a
      problem. With --rest, the other (built-in) objects are written to OUT, for
      kubernetes-validate. Prints how many objects of each kind it validated.

Exit status 1 and one line per problem on stderr when something is wrong.
"""

import os
import sys

import yaml

problems = []


def problem(msg):
    problems.append(msg)


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


# --------------------------------------------------------------- layout ----


def kustomization_refs(kdir, k):
    """(kind, path) pairs of the local files a kustomization refers to."""
    out = []
    for key in ("resources", "components", "crds"):
        for r in k.get(key) or []:
            if "://" in r or r.startswith("github.com/"):
                continue  # remote: not checked offline
            out.append(("resource", r))
    for p in k.get("patches") or []:
        if isinstance(p, dict) and p.get("path"):
            out.append(("patch", p["path"]))
    for p in k.get("patchesStrategicMerge") or []:
        if isinstance(p, str) and "\n" not in p:
            out.append(("patch", p))
    for p in k.get("patchesJson6902") or []:
        if isinstance(p, dict) and p.get("path"):
            out.append(("patch", p["path"]))
    for gen in (k.get("configMapGenerator") or []) + (k.get("secretGenerator") or []):
        for key in ("files", "envs"):
            for f in gen.get(key) or []:
                out.append(("data", f.split("=", 1)[-1]))
        if gen.get("env"):
            out.append(("data", gen["env"]))
    return out


def check_layout(deploy_dir):
    referenced = set()
    patches = set()
    yaml_files = set()
    kustomization_names = ("kustomization.yaml", "kustomization.yml", "Kustomization")
    for dirpath, _dirs, files in os.walk(deploy_dir):
        for name in files:
            path = os.path.normpath(os.path.join(dirpath, name))
            if name in kustomization_names:
                continue
            if name.endswith((".yaml", ".yml")):
                yaml_files.add(path)
    for dirpath, _dirs, files in os.walk(deploy_dir):
        kfiles = [n for n in files if n in kustomization_names]
        if not kfiles:
            continue
        if len(kfiles) > 1:
            problem(f"{dirpath}: more than one kustomization file")
        kpath = os.path.join(dirpath, kfiles[0])
        docs = load_yaml(kpath)
        if len(docs) != 1 or not isinstance(docs[0], dict):
            problem(f"{kpath}: expected one YAML mapping")
            continue
        k = docs[0]
        if k.get("kind", "Kustomization") not in ("Kustomization", "Component"):
            problem(f"{kpath}: kind is {k.get('kind')!r}")
        for kind, ref in kustomization_refs(dirpath, k):
            target = os.path.normpath(os.path.join(dirpath, ref))
            if kind == "resource" and os.path.isdir(target):
                if not any(os.path.isfile(os.path.join(target, n)) for n in kustomization_names):
                    problem(f"{kpath}: {ref} is a directory without a kustomization")
                continue
            if not os.path.isfile(target):
                problem(f"{kpath}: {kind} {ref} does not exist")
                continue
            referenced.add(target)
            if kind in ("patch", "data"):
                patches.add((kind, target))
    for path in sorted(yaml_files - referenced):
        problem(f"{path}: not referenced by any kustomization (forgotten in resources?)")
    for kind, path in sorted(patches):
        print(f"{kind} {path}")


# ----------------------------------------------------------------- refs ----


def pod_spec(obj):
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return (spec.get("template") or {}).get("spec") or {}
    if kind == "CronJob":
        return ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template", {}).get("spec") or {}
    if kind == "Pod":
        return spec
    return None


def pod_labels(obj):
    if obj.get("kind") == "Pod":
        return (obj.get("metadata") or {}).get("labels") or {}
    return ((obj.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# Objects an operator makes for a custom resource, which manifests refer to but do
# not contain: (kind, name, keys) for one resource object.
def operator_made(d):
    api, kind, name = d.get("apiVersion", ""), d.get("kind"), (d.get("metadata") or {}).get("name")
    if api.startswith("postgresql.cnpg.io/") and kind == "Cluster":
        # CloudNativePG: the application user's Secret, for the database made at bootstrap.
        keys = ["username", "password", "host", "port", "dbname", "uri", "jdbc-uri", "pgpass"]
        return [("Secret", f"{name}-app", {k: "" for k in keys})]
    return []


def check_refs(name, docs):
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d.get("kind"), {})[(d.get("metadata") or {}).get("name")] = d
    for d in list(docs):
        for kind, made, data in operator_made(d):
            by_kind.setdefault(kind, {}).setdefault(made, {"kind": kind, "metadata": {"name": made}, "data": data})
    configmaps = set(by_kind.get("ConfigMap", {}))
    secrets = set(by_kind.get("Secret", {}))  # with those operators make
    workloads = [d for d in docs if pod_spec(d) is not None]

    def where(d):
        return f"{name}: {d.get('kind')}/{(d.get('metadata') or {}).get('name')}"

    namespaces = {(d.get("metadata") or {}).get("namespace") for d in docs if d.get("kind") != "Namespace"}
    if len(namespaces) != 1 or None in namespaces:
        problem(f"{name}: objects are spread over namespaces {sorted(map(str, namespaces))}")

    for w in workloads:
        labels = pod_labels(w)
        sel = ((w.get("spec") or {}).get("selector") or {}).get("matchLabels")
        if w.get("kind") != "Pod" and not matches(sel, labels):
            problem(f"{where(w)}: selector {sel} does not match the pod labels {labels}")
        spec = pod_spec(w)
        volumes = {v.get("name") for v in spec.get("volumes") or []}
        claim_names = {
            (c.get("metadata") or {}).get("name")
            for c in (w.get("spec") or {}).get("volumeClaimTemplates") or []
        }
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            cname = f"{where(w)} container {c.get('name')}"
            ports = {p.get("name") for p in c.get("ports") or [] if p.get("name")}
            ports |= {p.get("containerPort") for p in c.get("ports") or []}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                p = c.get(probe) or {}
                for handler in ("httpGet", "tcpSocket", "grpc"):
                    port = (p.get(handler) or {}).get("port")
                    if isinstance(port, str) and port not in ports:
                        problem(f"{cname}: {probe} uses port {port!r} that the container does not name")
            for m in c.get("volumeMounts") or []:
                if m.get("name") not in volumes | claim_names:
                    problem(f"{cname}: volumeMount {m.get('name')!r} has no volume")
            for ef in c.get("envFrom") or []:
                for key, pool in (("configMapRef", configmaps), ("secretRef", secrets)):
                    ref = ef.get(key)
                    if ref and not ref.get("optional") and ref.get("name") not in pool:
                        problem(f"{cname}: envFrom {key} {ref.get('name')!r} does not exist")
            seen = set()
            for e in c.get("env") or []:
                if e.get("name") in seen:
                    problem(f"{cname}: env {e.get('name')} set twice")
                seen.add(e.get("name"))
                vf = e.get("valueFrom") or {}
                for key, pool, kind in (
                    ("configMapKeyRef", configmaps, "ConfigMap"),
                    ("secretKeyRef", secrets, "Secret"),
                ):
                    ref = vf.get(key)
                    if not ref:
                        continue
                    obj = by_kind.get(kind, {}).get(ref.get("name"))
                    if obj is None:
                        if not ref.get("optional"):
                            problem(f"{cname}: env {e['name']} refers to missing {kind} {ref.get('name')!r}")
                        continue
                    data = dict(obj.get("data") or {})
                    data.update(obj.get("stringData") or {})
                    if ref.get("key") not in data and not ref.get("optional"):
                        problem(f"{cname}: env {e['name']}: {kind} {ref.get('name')} has no key {ref.get('key')!r}")

    for svc in by_kind.get("Service", {}).values():
        sel = (svc.get("spec") or {}).get("selector")
        targets = [w for w in workloads if matches(sel, pod_labels(w))]
        if not targets:
            problem(f"{where(svc)}: selector {sel} matches no workload")
            continue
        for port in (svc.get("spec") or {}).get("ports") or []:
            tp = port.get("targetPort", port.get("port"))
            if isinstance(tp, str):
                named = {
                    p.get("name")
                    for w in targets
                    for c in pod_spec(w).get("containers") or []
                    for p in c.get("ports") or []
                }
                if tp not in named:
                    problem(f"{where(svc)}: targetPort {tp!r} is no container port name")

    for ss in by_kind.get("StatefulSet", {}).values():
        sname = (ss.get("spec") or {}).get("serviceName")
        if sname and sname not in by_kind.get("Service", {}):
            problem(f"{where(ss)}: serviceName {sname!r} is no Service")

    for pdb in by_kind.get("PodDisruptionBudget", {}).values():
        sel = ((pdb.get("spec") or {}).get("selector") or {}).get("matchLabels")
        if not any(matches(sel, pod_labels(w)) for w in workloads):
            problem(f"{where(pdb)}: selector {sel} matches no workload")

    for hpa in by_kind.get("HorizontalPodAutoscaler", {}).values():
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        if ref.get("name") not in by_kind.get(ref.get("kind"), {}):
            problem(f"{where(hpa)}: scaleTargetRef {ref.get('kind')}/{ref.get('name')} does not exist")


# ---------------------------------------------------------------- custom ----


def is_custom(d):
    group = (d.get("apiVersion") or "").rpartition("/")[0]
    return "." in group and not group.endswith(".k8s.io")


def check_custom(schema_dir, source, rest_path):
    import json

    import jsonschema

    docs = [d for d in yaml.safe_load_all(sys.stdin if source == "-" else open(source, encoding="utf-8")) if d]
    counts = {}
    for d in docs:
        if not is_custom(d):
            continue
        group, _, version = d["apiVersion"].rpartition("/")
        where = f"{source}: {d.get('kind')}/{(d.get('metadata') or {}).get('name')}"
        path = os.path.join(schema_dir, f"{group}_{version}_{d.get('kind')}.json")
        if not os.path.exists(path):
            problem(f"{where}: no schema {path} for {d['apiVersion']} {d.get('kind')}")
            continue
        with open(path, encoding="utf-8") as f:
            schema = json.load(f)
        validator = jsonschema.Draft202012Validator(schema)
        errors = sorted(validator.iter_errors(d), key=lambda e: list(e.absolute_path))
        for e in errors:
            at = "/".join(str(p) for p in e.absolute_path) or "(root)"
            problem(f"{where}: {at}: {e.message}")
        counts[d.get("kind")] = counts.get(d.get("kind"), 0) + 1
    if rest_path:
        with open(rest_path, "w", encoding="utf-8") as f:
            yaml.safe_dump_all([d for d in docs if not is_custom(d)], f, sort_keys=False)
    if counts:
        print(", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + " validated against " + schema_dir)


def main():
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "layout":
        check_layout(args[1])
    elif len(args) == 2 and args[0] == "refs":
        check_refs(args[1], [d for d in yaml.safe_load_all(sys.stdin) if d])
    elif len(args) == 3 and args[0] == "custom":
        check_custom(args[1], args[2], None)
    elif len(args) == 5 and args[0] == "custom" and args[2] == "--rest":
        check_custom(args[1], args[4], args[3])
    else:
        sys.exit(__doc__)
    for p in problems:
        print(f"ERROR {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
