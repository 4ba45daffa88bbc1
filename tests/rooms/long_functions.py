#!/usr/bin/env python3
"""long_functions.py: the C functions of the rooms that are longer than a limit.

    long_functions.py [--max N] [--allow FILE] [--list] ROOT DIR...

Reads every .c and .h file under ROOT/DIR (pipeline/, stages/, mpi/ for test_function_length) and
measures each function definition by brace matching: from the line that names the function
to the line of its closing brace, both counted. Comments, string and character literals and
preprocessor lines are blanked first, so a brace inside them does not count. A definition is
a '{' at file level whose preceding text ends with ')'.

--list prints every function over the limit (longest first) and exits 0. Otherwise the exit
status is 1 when a function over the limit is not in the allow list, or when an allow-list
entry names a function that no longer exists or is no longer over the limit (the list must not
keep stale entries); 0 otherwise.

The allow list (FILE): one `path function` per line, path relative to ROOT; '#' starts a
comment (each entry says why its function is one piece).
"""
import os
import re
import sys

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def blank(text):
    """text with comments, literals and preprocessor lines replaced by spaces (newlines kept)."""
    out = []
    i, n = 0, len(text)
    line_start = True
    while i < n:
        c = text[i]
        if line_start and c in " \t":
            out.append(c)
            i += 1
            continue
        if line_start and c == "#":  # preprocessor line, with its continuations
            while i < n and text[i] != "\n":
                if text[i] == "\\" and i + 1 < n and text[i + 1] == "\n":
                    out.append(" \n")
                    i += 2
                    continue
                out.append(" ")
                i += 1
            continue
        line_start = False
        if text.startswith("//", i):
            while i < n and text[i] != "\n":
                out.append(" ")
                i += 1
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
            continue
        if c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
            continue
        if c == "\n":
            line_start = True
        out.append(c)
        i += 1
    return "".join(out)


def functions(path):
    """(name, first line, last line) of every function defined in the C file at path."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = blank(f.read())
    found = []
    depth = 0
    chunk_start = 0  # where the text since the last file-level ';' or '}' begins
    i = 0
    while i < len(text):
        c = text[i]
        if c == "{":
            if depth == 0:
                head = text[chunk_start:i]
                depth = 1
                i += 1
                while i < len(text) and depth:
                    if text[i] == "{":
                        depth += 1
                    elif text[i] == "}":
                        depth -= 1
                    i += 1
                if head.rstrip().endswith(")"):
                    paren = head.find("(")
                    names = IDENT.findall(head[:paren])
                    if names:
                        name = names[-1]
                        name_at = chunk_start + head[:paren].rfind(name)
                        first = text.count("\n", 0, name_at) + 1
                        last = text.count("\n", 0, i - 1) + 1
                        found.append((name, first, last))
                chunk_start = i
                continue
        elif c == ";" and depth == 0:
            chunk_start = i + 1
        i += 1
    return found


def read_allow(path):
    allow = {}
    if not path:
        return allow
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.split("#", 1)[0].split()
            if not line:
                continue
            if len(line) != 2:
                sys.exit(f"{path}:{lineno}: expected 'path function'")
            allow[(line[0], line[1])] = lineno
    return allow


def main(argv):
    limit, allow_path, list_only, rest = 120, None, False, []
    it = iter(argv)
    for a in it:
        if a == "--max":
            limit = int(next(it))
        elif a == "--allow":
            allow_path = next(it)
        elif a == "--list":
            list_only = True
        else:
            rest.append(a)
    if len(rest) < 2:
        sys.exit(__doc__)
    root, dirs = rest[0], rest[1:]
    long = []
    every = set()
    for d in dirs:
        if not os.path.isdir(os.path.join(root, d)):
            print(f"FAIL: {os.path.join(root, d)} is not a directory")
            return 1
        for base, _, files in os.walk(os.path.join(root, d)):
            for fn in sorted(files):
                if not fn.endswith((".c", ".h")):
                    continue
                path = os.path.join(base, fn)
                rel = os.path.relpath(path, root)
                for name, first, last in functions(path):
                    every.add((rel, name))
                    n = last - first + 1
                    if n > limit:
                        long.append((n, rel, first, name))
    long.sort(key=lambda x: (-x[0], x[1], x[2]))
    for n, rel, first, name in long:
        print(f"{n:5d}  {rel}:{first}  {name}")
    if not every:
        print(f"FAIL: no function found under {root} {' '.join(dirs)}")
        return 1
    if list_only:
        return 0
    allow = read_allow(allow_path)
    fail = 0
    over = {(rel, name) for _, rel, _, name in long}
    for n, rel, first, name in long:
        if (rel, name) not in allow:
            print(f"FAIL: {rel}:{first} {name} has {n} lines (more than {limit}): split it where "
                  f"the split has a name (tests/rooms/long_functions.allow is only for numerical "
                  f"kernels)")
            fail = 1
    for (rel, name), lineno in sorted(allow.items(), key=lambda x: x[1]):
        if (rel, name) not in every:
            print(f"FAIL: {allow_path}:{lineno}: {rel} {name} does not exist (stale entry)")
            fail = 1
        elif (rel, name) not in over:
            print(f"FAIL: {allow_path}:{lineno}: {rel} {name} is no longer over {limit} lines "
                  f"(remove the entry)")
            fail = 1
    if not fail:
        print(f"ok: no function over {limit} lines outside the allow list ({len(every)} functions)")
    return fail


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
