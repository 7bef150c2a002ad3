#!/usr/bin/env python3
"""Writes a `git fast-import` stream: a deterministic history of RBAC manifests for
benchmarking `kubeward git`, and prints its ground truth on stderr.

    python3 scripts/gen_git_history.py --commits 10000 --manifests 500 --seed 7 \
        | git -C REPO fast-import --quiet

History: the first commit adds MANIFESTS files (deploy/team-NN/app-NNN.yaml), each holding a
role without pod write (four in five ClusterRoles, the rest Roles) and a binding of it. Every
later commit, chosen by a seeded PRNG, does one of:
  tweak   (82%) change a manifest without changing what it grants on pods (a configmap verb, a
          label, a comment): never a finding
  widen   (3%)  give a role that has none `create` on pods/exec: one `widened` finding
  bind    (3%)  add a subject to a binding: one `bound` finding when its role grants pod
          write by then, none otherwise
  move    (2%)  rename a manifest to another team directory: never a finding
  other   (10%) change README.md or a non-manifest file: never a finding
The ground truth (expected widened and bound findings) is printed on stderr as JSON.
"""

import argparse
import json
import random
import sys


def manifest(i, st):
    """The text of manifest i in state st."""
    name = f"app-{i:03d}"
    cluster = i % 5 != 0
    ns = f"team-{i % 20:02d}"
    rules = [
        '- apiGroups: [""]\n  resources: [pods, pods/log]\n  verbs: [get, list, watch]\n',
        '- apiGroups: [""]\n  resources: [configmaps]\n  verbs: [%s]\n' % ", ".join(st["cm_verbs"]),
    ]
    if st["widened"]:
        rules.append('- apiGroups: [""]\n  resources: [pods/exec]\n  verbs: [create]\n')
    kind = "ClusterRole" if cluster else "Role"
    meta_ns = "" if cluster else f"  namespace: {ns}\n"
    role = (
        "apiVersion: rbac.authorization.k8s.io/v1\n"
        f"kind: {kind}\n"
        "metadata:\n"
        f"  name: {name}\n"
        f"{meta_ns}"
        "  labels:\n"
        f"    app: {name}\n"
        f"    revision: \"{st['rev']}\"\n"
        "rules:\n" + "".join(rules)
    )
    bkind = "ClusterRoleBinding" if cluster else "RoleBinding"
    subjects = "".join(
        f"- kind: ServiceAccount\n  name: {s}\n  namespace: {ns}\n" for s in st["subjects"]
    )
    binding = (
        "apiVersion: rbac.authorization.k8s.io/v1\n"
        f"kind: {bkind}\n"
        "metadata:\n"
        f"  name: {name}\n"
        f"{meta_ns}"
        f"roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: {kind}, name: {name}}}\n"
        "subjects:\n" + subjects
    )
    return f"# generated, revision {st['rev']}\n{role}---\n{binding}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--commits", type=int, default=10000)
    ap.add_argument("--manifests", type=int, default=500)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    out = sys.stdout.buffer
    state = {}
    paths = {}
    for i in range(a.manifests):
        state[i] = {"cm_verbs": ["get"], "widened": False, "subjects": ["app"], "rev": 0}
        paths[i] = f"deploy/team-{i % 20:02d}/app-{i:03d}.yaml"
    truth = {"commits": a.commits, "manifests": a.manifests, "widened": 0, "bound": 0}
    t0 = 1_735_689_600  # 2025-01-01T00:00:00Z
    mark = 0

    def blob_cmd(path, text):
        data = text.encode()
        return b"M 100644 inline " + path.encode() + b"\ndata %d\n" % len(data) + data + b"\n"

    def commit(msg, ops, who):
        nonlocal mark
        mark += 1
        when = t0 + mark * 600
        m = msg.encode()
        out.write(b"commit refs/heads/main\nmark :%d\n" % mark)
        out.write(b"author %s %d +0000\n" % (who.encode(), when))
        out.write(b"committer %s %d +0000\n" % (who.encode(), when))
        out.write(b"data %d\n%s\n" % (len(m), m))
        if mark > 1:
            out.write(b"from :%d\n" % (mark - 1))
        for op in ops:
            out.write(op)
        out.write(b"\n")

    people = [f"Dev {n} <dev{n}@example.com>" for n in range(12)]
    first = [blob_cmd(paths[i], manifest(i, state[i])) for i in range(a.manifests)]
    first.append(blob_cmd("README.md", "# generated infrastructure repository\n"))
    commit("Initial manifests", first, people[0])
    verbs = ["get", "list", "watch", "create", "update", "delete"]
    for n in range(2, a.commits + 1):
        who = people[rnd.randrange(len(people))]
        r = rnd.random()
        i = rnd.randrange(a.manifests)
        st = state[i]
        if r < 0.82:
            kind = rnd.randrange(3)
            if kind == 0:
                st["cm_verbs"] = sorted(rnd.sample(verbs, rnd.randrange(1, 4)))
            st["rev"] += 1
            commit(f"Tweak app-{i:03d}", [blob_cmd(paths[i], manifest(i, st))], who)
        elif r < 0.85:
            candidates = [k for k in state if not state[k]["widened"]]
            if candidates:
                i = candidates[rnd.randrange(len(candidates))]
                state[i]["widened"] = True
                truth["widened"] += 1
            commit(f"Let app-{i:03d} exec", [blob_cmd(paths[i], manifest(i, state[i]))], who)
        elif r < 0.88:
            st["subjects"].append(f"extra-{n}")
            if st["widened"]:
                truth["bound"] += 1
            commit(f"Bind app-{i:03d} to extra-{n}", [blob_cmd(paths[i], manifest(i, st))], who)
        elif r < 0.90:
            old = paths[i]
            paths[i] = f"deploy/moved-{n % 7}/app-{i:03d}.yaml"
            if paths[i] == old:
                paths[i] = f"deploy/moved-x{n}/app-{i:03d}.yaml"
            ops = [b"D " + old.encode() + b"\n", blob_cmd(paths[i], manifest(i, st))]
            commit(f"Move app-{i:03d}", ops, who)
        else:
            commit(f"Docs {n}", [blob_cmd("README.md", f"# generated\n\nchange {n}\n")], who)
    out.flush()
    print(json.dumps(truth), file=sys.stderr)


if __name__ == "__main__":
    main()
