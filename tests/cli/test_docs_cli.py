#!/usr/bin/python3
"""test_docs_cli.py: every `qshard ...` command line quoted in README.md and docs/*.md
parses at usage level against the current CLI (issue 21, point 11).

Quoted lines: the lines of fenced code blocks (a trailing backslash joins the next line)
and the inline code spans of the prose, wherever the word `qshard` (alone or as
`build/qshard`) is followed by a space. Each one is read up to the end of its shell command
(`&&`, `;`, `|` between spaces, `>`, `#`). The CLI's own words come from its help, so they
cannot go stale: the commands from `qshard --help`, each command's options from
`qshard <command> --help`. Checks per line:
  - the command exists (`<command>` stands for any; `--help`/`--version` stand alone);
  - every option (a word starting with "-", brackets, "...", "=value" taken off) appears
    in that command's usage text;
  - an option whose usage lists the values it takes in lower case (`--weights float`,
    `--weights recon:CAND`, `--arch llama|mistral|qwen2`) is given one of them (the part
    before ':' or '[' counts; upper-case placeholders and "..." are not checked).
Also: every repository path named outside code blocks (`tests/...`, `pipeline/...`,
`stages/...`, `mpi/...`, `configs/...`, `slurm/...`, `docs/...`, `.ci/...`; `x.{h,c}`
expands) exists. A failure names the file, the line and the word. The script prints how
many command lines and paths it checked per file; fewer than 40 command lines or 100 paths
in all is a failure (the extraction itself broke), and so is a self-test of bad lines
(an unknown command, an unknown option, an unknown --weights source) that is not caught.
Usage: test_docs_cli.py  (env: QS_BIN, QS_SOURCE_DIR, QS_MPIEXEC)"""
import glob
import os
import re
import shlex
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402
from qstest import check  # noqa: E402

MPI_COMMANDS = {"run", "eval", "tokenize"}  # they start MPI before reading argv
QSHARD = re.compile(r"(?:^|(?<=[\s/(]))qshard (?=\S)")
PATH = re.compile(r"(?<![\w/.$-])((?:tests|pipeline|stages|mpi|configs|slurm|docs|\.ci)/[\w./-]*\w)"
                  r"(\.\{[\w,]+\})?")
END = {"&&", "||", ";", "|", ">", ">>", "2>", "2>&1", "<"}


def usage(cmd):
    """The usage text of `qshard CMD --help` (`qshard --help` for None)."""
    args = [cmd, "--help"] if cmd else ["--help"]
    r = Q.mpirun(1, Q.QS, *args) if cmd in MPI_COMMANDS else Q.run([Q.QS, *args])
    check(r.returncode == 0 and r.stdout.startswith("usage: "),
          f"qshard {' '.join(args)}: rc {r.returncode}: {r.stderr[:300]}")
    return r.stdout


def commands(top):
    """{command} from the "commands:" block of `qshard --help`."""
    out, inside = set(), False
    for line in top.splitlines():
        if line.startswith("commands:"):
            inside = True
        elif inside and line and not line.startswith(" "):
            break
        elif inside:
            m = re.match(r"  ([a-z][a-z0-9-]*)(\s|$)", line)
            if m and m.group(1) != "qshard":
                out.add(m.group(1))
    return out


def options(text):
    """({option}, {option: {lower-case value}}) named in a usage text."""
    opts = set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", text))
    values = {}
    for opt, val in re.findall(r"(?<![\w-])(--[a-z][\w-]*) (\S+)", text):
        val = val.rstrip("]")
        if not re.fullmatch(r"[a-z][\w.:|\[\]-]*", val) or "=" in val:
            continue
        for v in val.split("|"):
            values.setdefault(opt, set()).add(re.split(r"[:\[]", v)[0])
    return opts, values


def quoted_lines(path):
    """[(line number, text after `qshard `)] of every quoted qshard command in a file."""
    out = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    in_block, pending, start = False, "", 0
    for i, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            in_block = not in_block
            continue
        if in_block:
            if not pending:
                start = i
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            spans, pending = [pending + line], ""
        else:
            start = i
            spans = re.findall(r"`([^`]+)`", line)
        for s in spans:
            if s.lstrip().startswith("#"):
                continue  # a shell comment line in a code block
            for m in QSHARD.finditer(s):
                out.append((start, s[m.end():]))
    return out


def quoted_paths(path):
    """[(line number, repository path)] named outside the code blocks of a file."""
    out, in_block = [], False
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if line.lstrip().startswith("```"):
                in_block = not in_block
            elif not in_block:
                for stem, alts in PATH.findall(line):
                    exts = alts[2:-1].split(",") if alts else [""]
                    out += [(i, stem + ("." + e if e else "")) for e in exts]
    return out


def words(rest):
    """The words of one command line after `qshard`, up to the end of its shell command."""
    try:
        toks = shlex.split(rest, comments=True)
    except ValueError:
        toks = rest.split()
    out = []
    for t in toks:
        if t in END or t.startswith(">"):
            break
        out.append(t)
    return out


def option_word(t):
    """The option a word names ("[--set" -> "--set", "--set=a" -> "--set"), or None."""
    t = t.lstrip("[(")
    if not t.startswith("-") or t in ("-", "--"):
        return None
    return re.split(r"[=\]\)]", t)[0].rstrip(".")


def check_line(where, ws, cmds, usages, check=check):
    """Checks one quoted command (its words after `qshard`) through check(cond, msg)."""
    if not ws or not re.fullmatch(r"<command>|--?[a-z][\w-]*|[a-z][\w-]*", ws[0]):
        return  # "build/qshard -> ...": the program named, not a command line
    cmd, rest = ws[0], ws[1:]
    if cmd.startswith("-"):
        check(cmd in ("--help", "-h", "--version") and not rest,
              f"{where}: qshard {' '.join(ws)}: not a command")
        return
    if cmd == "<command>":
        check(rest in ([], ["--help"]), f"{where}: qshard {' '.join(ws)}")
        return
    if not check(cmd in cmds, f"{where}: unknown command '{cmd}' (commands: "
                              f"{', '.join(sorted(cmds))})"):
        return
    opts, values = usages[cmd]
    for k, t in enumerate(rest):
        o = option_word(t)
        if o is None or not check(o in opts | {"--help", "-h"},
                                  f"{where}: qshard {cmd}: unknown option '{o}' "
                                  f"(not in 'qshard {cmd} --help')"):
            continue
        val = t.split("=", 1)[1] if "=" in t else (rest[k + 1] if k + 1 < len(rest) else "")
        base = re.split(r"[:\[\]]", val)[0]
        if o in values and base and base[0].islower():
            check(base in values[o],
                  f"{where}: qshard {cmd} {o} {val}: '{base}' is not one of "
                  f"{sorted(values[o])} ('qshard {cmd} --help')")


def self_test(cmds, usages):
    """The checks must catch an unknown command, option and --weights source."""
    for bad in ("frobnicate CONFIG.yaml", "run CONFIG.yaml --bogus", "eval CONFIG --weights fp8",
                "plan CONFIG --ranks 2 [--jsn]"):
        caught = []
        check_line("self-test", words(bad), cmds, usages,
                   check=lambda cond, msg: cond or caught.append(msg))
        if check(caught, f"self-test: 'qshard {bad}' was not caught"):
            print(f"caught: {caught[0]}")


def main():
    top = usage(None)
    cmds = commands(top)
    check(len(cmds) >= 10, f"qshard --help: only {sorted(cmds)} found as commands")
    usages = {c: options(usage(c)) for c in sorted(cmds)}
    self_test(cmds, usages)
    files = [os.path.join(Q.SRC, "README.md")]
    files += sorted(glob.glob(os.path.join(Q.SRC, "docs", "*.md")))
    nlines = npaths = 0
    for path in files:
        rel = os.path.relpath(path, Q.SRC)
        found = quoted_lines(path)
        for line, rest in found:
            check_line(f"{rel}:{line}", words(rest), cmds, usages)
        paths = quoted_paths(path)
        for line, p in paths:
            check(os.path.exists(os.path.join(Q.SRC, p)), f"{rel}:{line}: no such path {p}")
        print(f"{rel}: {len(found)} quoted qshard command line(s), {len(paths)} path(s)")
        nlines += len(found)
        npaths += len(paths)
    check(nlines >= 40, f"only {nlines} quoted qshard command lines found: the extraction broke")
    check(npaths >= 100, f"only {npaths} repository paths found: the extraction broke")


if __name__ == "__main__":
    main()
    Q.finish()
