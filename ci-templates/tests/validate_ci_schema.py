"""Validates GitLab CI YAML files against GitLab's CI JSON schema (specs/gitlab/ci.json).

Usage: validate_ci_schema.py SCHEMA FILE...  — prints one line per error, exits 1 on any.
A component file (`spec:` header, `---`, body) is two documents: each is validated. `!reference`
tags become plain lists, as GitLab resolves them before validation.
"""
import json
import sys

import jsonschema
import yaml


class Loader(yaml.SafeLoader):
    pass


def reference(loader, node):
    return loader.construct_sequence(node)


Loader.add_constructor("!reference", reference)


def main() -> int:
    schema = json.load(open(sys.argv[1], encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    failures = 0
    for path in sys.argv[2:]:
        try:
            with open(path, encoding="utf-8") as f:
                docs = [d for d in yaml.load_all(f, Loader=Loader) if d is not None]
        except yaml.YAMLError as e:
            failures += 1
            print(f"{path}: not YAML: {' '.join(str(e).split())}")
            continue
        for index, doc in enumerate(docs):
            for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
                failures += 1
                where = "/".join(str(p) for p in error.absolute_path) or "(root)"
                print(f"{path} [document {index + 1}] {where}: {error.message[:300]}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
