#!/usr/bin/env bash
# Every reference to the CI/CD build-out plan (docs/plan/cicd-buildout-plan.md) names a section
# the plan defines. Exit 1 with file:line and the reference for each one that does not.
#
# Sections, as the plan numbers them (outside code fences):
#   deliverables    "**2.5 Environment Promotion Flow**"  -> 2.5
#   workstreams     "### WORKSTREAM 2: ..."                -> 2
#   numbered heads  "## 3. ..." / "### 2.5 ..."            -> 3 / 2.5 (should the plan adopt them)
#   appendices      "## Appendix A: ..."                   -> Appendix A
#   named parts     "## Script 4 Structure", "## Phase 18: ..." -> Script 4, Phase 18
# References, in every tracked or new text file: a section sign with a number or a range of
# numbers (RFC citations such as "RFC 9112" followed by a section sign are not the plan's), "plan 4.2",
# Appendix X, Script N, Workstream N, plan "Phase N". Not scanned: the plan copy itself, this
# script, and vendored upstream files (sandbox/fixtures/, ci-templates/tests/schema/,
# security-setup/tests/schemas/); target/ and .git/ are never listed.
set -euo pipefail
cd "$(dirname "$0")/.."

plan=docs/plan/cicd-buildout-plan.md
if [[ ! -f $plan ]]; then
  echo "check-plan-refs: $plan is missing" >&2
  exit 1
fi

list_files() {
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard
  else
    find . \( -path ./target -o -path ./.git \) -prune -o -type f -printf '%P\0'
  fi
}

read -r -d '' checker <<'PY' || true
import bisect
import os
import re
import sys

plan = sys.argv[1]
skip_files = {plan, "scripts/check-plan-refs.sh"}
skip_dirs = ("target/", ".git/", "sandbox/fixtures/", "ci-templates/tests/schema/",
             "security-setup/tests/schemas/")

NUM = r"\d+(?:\.\d+)*"

# --- the sections the plan defines ---------------------------------------------------------------
sections = set()
in_fence = False
with open(plan, encoding="utf-8") as f:
    for line in f:
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            title = m.group(1)
            for pattern, name in ((r"(?i:WORKSTREAM)\s+(\d+)\b", "{}"),
                                  (r"(" + NUM + r")\.?\s", "{}"),
                                  (r"Appendix\s+([A-Z])\b", "Appendix {}"),
                                  (r"Script\s+(\d+)\b", "Script {}"),
                                  (r"Phase\s+([0-9A-Z]+)\b", "Phase {}")):
                h = re.match(pattern, title)
                if h:
                    sections.add(name.format(h.group(1)))
            continue
        m = re.match(r"\*\*(\d+(?:\.\d+)+)\s+[^*]+\*\*", line)
        if m:
            sections.add(m.group(1))

if not sections:
    sys.exit(f"check-plan-refs: no numbered sections found in {plan}")

# --- the references ------------------------------------------------------------------------------
SECTION_SIGN = re.compile(r"§[ \t]*(" + NUM + r")?(?:[ \t]*[–-][ \t]*(" + NUM + r"))?")
RFC_BEFORE = re.compile(r"RFC[ \t-]*\d+[ \t,]*$")
NAMED = [
    (re.compile(r"\b[Pp]lan(?:'s)?,?[ \t]+(?:[Ss]ection[ \t]+)?(\d+(?:\.\d+)+)\b"), "{}"),
    (re.compile(r"\bAppendix[ \t]+([A-Z])\b"), "Appendix {}"),
    (re.compile(r"\bScript[ \t]+(\d+)\b"), "Script {}"),
    (re.compile(r"\b(?:WORKSTREAM|Workstream)[ \t]+(\d+)\b"), "{}"),
    (re.compile(r"\b[Pp]lan(?:'s)?,?[ \t]+\"?Phase[ \t]+([0-9A-Z]+)\b"), "Phase {}"),
]

checked = 0
files_with_refs = set()
broken = []

def check(path, lineno, text, names):
    global checked
    checked += 1
    files_with_refs.add(path)
    missing = [n for n in names if n not in sections]
    if missing:
        broken.append((path, lineno, f"{text.strip()} (no section {', '.join(missing)} in {plan})"))

for raw in sys.stdin.buffer.read().split(b"\0"):
    path = raw.decode("utf-8", "replace")
    if not path or path in skip_files or path.startswith(skip_dirs) or not os.path.isfile(path):
        continue
    with open(path, "rb") as f:
        data = f.read()
    if b"\0" in data[:8192]:
        continue
    text = data.decode("utf-8", "replace")
    starts = None  # offsets of the line starts, computed for files with a match only

    def where(pos):
        global starts
        if starts is None:
            starts = [0] + [m.end() for m in re.finditer("\n", text)]
        lineno = bisect.bisect_right(starts, pos)
        return lineno, text[starts[lineno - 1]:pos]

    if "§" in text:
        for m in SECTION_SIGN.finditer(text):
            lineno, before = where(m.start())
            if RFC_BEFORE.search(before):
                continue
            if m.group(1) is None:
                checked += 1
                snippet = text[m.start():].split("\n", 1)[0][:20]
                broken.append((path, lineno, f"{snippet} (section sign without a section number)"))
                continue
            check(path, lineno, m.group(0), [g for g in m.groups() if g])
    for pattern, name in NAMED:
        for m in pattern.finditer(text):
            check(path, where(m.start())[0], m.group(0), [name.format(m.group(1))])

if broken:
    print(f"check-plan-refs: {len(broken)} of {checked} plan references name no section of {plan}:")
    for path, lineno, what in sorted(broken):
        print(f"  {path}:{lineno}: {what}")
    print(f"  (sections: {', '.join(sorted(sections, key=lambda s: (s[0].isalpha(), s)))})")
    sys.exit(1)
print(f"check-plan-refs: {checked} plan references in {len(files_with_refs)} files, "
      f"all name a section of {plan}")
PY

list_files | python3 -c "$checker" "$plan"
