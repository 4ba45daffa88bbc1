#!/usr/bin/env python3
"""design_paths.py: docs/design.md (and README.md's Layout block) name only what exists, and
name every room and every C file of the rooms.

    design_paths.py ROOT [--list]

Fails (exit 1, one line per problem) when
  - a repository path named in docs/design.md or in README.md's "## Layout" code block does not
    exist. A repository path is a word whose first component is an entry of ROOT (pipeline/...,
    stages/..., tests/..., docs/...); `<x>` and `*` in it are wildcards that must match
    something. In a table row, a bare source name (.c/.h/.py/.sh/.cmake) is taken in the
    folder of a repository path before it on the row (the nearest first): `pipeline/io/` |
    `hf_config.c` ... names pipeline/io/hf_config.c. In README's Layout block every name of a row (`base/`,
    `unit/check.h`, `slurm.md`) is first taken relative to the entry the row starts with.
    Any other bare source name must be a file somewhere under ROOT (file names are unique
    across the rooms);
  - a room (pipeline/ and its source folders, stages/, mpi/) is not named in design.md;
  - a .c file of a room is not named in design.md (in full, or bare after its folder).
Run-directory names (plan/plan.json, layer-NNN.h5, out/) are not repository paths: their
first component is not an entry of ROOT, and bare non-source names without a folder before
them are not checked. --list prints every path it checked.
"""
import glob
import os
import re
import sys

SOURCE_EXT = (".c", ".h", ".py", ".sh", ".cmake")
CHECKED_EXT = SOURCE_EXT + (".md", ".dot", ".txt", ".yaml", ".supp")
# headers of other projects that the prose names (not files of this repository)
NOT_OURS = {"mpi.h"}
WORD = re.compile(r"[A-Za-z0-9_.*<>/+-]+")


def words(line):
    """(position, word) of the path-like words of a line, punctuation trimmed."""
    for m in WORD.finditer(line):
        w = m.group(0).strip(".,;:")
        if w and ("/" in w or w.endswith(CHECKED_EXT)) and not w.startswith("../"):
            yield m.start(), w


class Doc:
    def __init__(self, root):
        self.root = root
        self.top = set(os.listdir(root)) - {".git", "build", ".venv"}
        self.checked = []   # (where, path as resolved)
        self.missing = []   # (where, word, resolved)
        self.named = set()  # normalized existing paths named (files and folders)

    def is_repo_path(self, w):
        return w.split("/", 1)[0] in self.top and w.split("/", 1)[0] != w or w in self.top

    def exists(self, rel):
        pattern = re.sub(r"<[^>]*>", "*", rel)
        if "*" in pattern:
            return bool(glob.glob(os.path.join(self.root, pattern)))
        return os.path.exists(os.path.join(self.root, rel))

    def find_unique(self, name):
        hits = []
        for top in sorted(self.top):
            base = os.path.join(self.root, top)
            if not os.path.isdir(base):
                continue
            for d, _, files in os.walk(base):
                if name in files:
                    hits.append(os.path.relpath(os.path.join(d, name), self.root))
        return hits

    def note(self, where, word, rel):
        rel = os.path.normpath(rel)
        self.checked.append((where, rel))
        if self.exists(rel):
            if "*" not in rel and "<" not in rel:
                self.named.add(rel)
        else:
            self.missing.append((where, word, rel))

    def line(self, where, text, mode, context=None):
        """Checks the paths of one line. mode "prose": repository paths, and bare source
        names anywhere in the repository; "table" (a row of a table): bare source names
        in the folder of a repository path before them on the row (nearest first); "layout" (README's Layout
        block): every word first relative to context, the row's top-level entry."""
        folders = []  # of the repository paths before, nearest first
        for _, w in words(text):
            bare = "/" not in w.rstrip("/")
            tries = []
            if mode == "layout" and context:
                tries.append(os.path.join(context, w))
            if self.is_repo_path(w):
                tries.append(w)
            elif mode == "table" and folders and bare and w.endswith(SOURCE_EXT):
                tries += [os.path.join(f, w) for f in folders]
            if not tries and bare and w.endswith(SOURCE_EXT) and w not in NOT_OURS:
                tries = self.find_unique(w) or [w + " (a file of that name anywhere)"]
            if not tries:
                continue  # not a repository path (a run-directory name, f16/bf16, ...)
            hit = next((t for t in tries if self.exists(t)), None)
            self.note(where, w, hit or tries[0])
            if self.is_repo_path(w):
                rel = w.rstrip("/")
                folders.insert(0, rel if os.path.isdir(os.path.join(self.root, rel))
                               else os.path.dirname(rel))


def check_design(doc, path):
    with open(path, encoding="utf-8") as f:
        for n, text in enumerate(f, 1):
            doc.line(f"{os.path.relpath(path, doc.root)}:{n}", text,
                     "table" if text.startswith("|") else "prose")


def check_readme_layout(doc, path):
    """README.md's '## Layout' code block: each row starts with a top-level entry, the bare
    names after it (and on its continuation lines) are relative to it."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    try:
        start = lines.index("## Layout")
    except ValueError:
        return [f"{os.path.relpath(path, doc.root)}: no '## Layout' section"]
    in_block, context, found = False, None, False
    for n in range(start + 1, len(lines)):
        text = lines[n]
        where = f"{os.path.relpath(path, doc.root)}:{n + 1}"
        if text.startswith("```"):
            if in_block:
                break
            in_block = found = True
            continue
        if text.startswith("## "):
            break
        if not in_block:
            continue
        if text and not text[0].isspace():
            entry = text.split()[0]
            doc.note(where, entry, entry)
            context = entry.rstrip("/") if entry.endswith("/") else None
            rest = text[len(entry):]
        else:
            rest = text
        doc.line(where, rest, "layout", context)
    return [] if found else [f"{os.path.relpath(path, doc.root)}: no code block under '## Layout'"]


def rooms(root):
    """The room folders: pipeline/ (its top files), its source subfolders, stages/, mpi/."""
    out = ["pipeline", "stages", "mpi"]
    for d in sorted(os.listdir(os.path.join(root, "pipeline"))):
        p = os.path.join(root, "pipeline", d)
        if os.path.isdir(p) and any(f.endswith(".c") for f in os.listdir(p)):
            out.append(f"pipeline/{d}")
    return out


def main(argv):
    if not argv or argv[0].startswith("-"):
        sys.exit(__doc__)
    root = argv[0]
    doc = Doc(root)
    design = os.path.join(root, "docs", "design.md")
    check_design(doc, design)
    design_named = set(doc.named)
    problems = check_readme_layout(doc, os.path.join(root, "README.md"))
    if "--list" in argv:
        for where, rel in doc.checked:
            print(f"{where}: {rel}")
    for where, word, rel in doc.missing:
        problems.append(f"{where}: '{word}' names {rel}, which does not exist")
    for room in rooms(root):
        if not any(p == room or p.startswith(room + "/") for p in design_named):
            problems.append(f"docs/design.md: the room {room}/ is not named")
            continue
        for f in sorted(os.listdir(os.path.join(root, room))):
            rel = f"{room}/{f}"
            if f.endswith(".c") and rel not in design_named:
                problems.append(f"docs/design.md: {rel} is not named (a row of its room's "
                                "table, in full or after its folder)")
    for p in problems:
        print("FAIL:", p)
    if len(doc.checked) < 20:
        print(f"FAIL: only {len(doc.checked)} paths found: is {root} the repository?")
        return 1
    if not problems:
        print(f"ok: {len(doc.checked)} paths named, all exist; {len(rooms(root))} rooms and "
              f"their C files named in docs/design.md")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
