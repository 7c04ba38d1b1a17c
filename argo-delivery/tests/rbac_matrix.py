"""Evaluates Argo CD RBAC requests with Casbin and Argo CD's own model.

Usage: rbac_matrix.py MODEL BUILTIN_POLICY POLICY < requests.json
requests.json: a JSON list of [subject, resource, action, object]; prints a JSON list of booleans.
The built-in policy (role:admin, role:readonly) and the platform's policy.csv are loaded together,
as Argo CD does.
"""
import json
import sys

import casbin


def load_lines(enforcer, path):
    for raw in open(path, encoding="utf-8"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split(",")]
        if fields[0] == "p":
            enforcer.add_policy(*fields[1:])
        elif fields[0] == "g":
            enforcer.add_grouping_policy(*fields[1:])


def main() -> int:
    model, builtin, policy = sys.argv[1:4]
    enforcer = casbin.Enforcer(model)
    load_lines(enforcer, builtin)
    load_lines(enforcer, policy)
    requests = json.load(sys.stdin)
    print(json.dumps([bool(enforcer.enforce(*r)) for r in requests]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
