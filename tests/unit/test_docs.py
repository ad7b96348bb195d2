"""The docs match the program: every flag `overlayd ... --help` lists is documented, no documented
flag is gone, every `overlayd` command line in the docs uses real flags, and every link resolves.

Flag tables are marked `<!-- flags: overlayd [sub] -->` (docs/configuration.md, docs/lab.md); the
first cell of each row names the flags. A flag you add to a parser needs a row there.
"""
from __future__ import annotations

import functools
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = os.path.join(REPO, "docs")
OVERLAYD = os.path.join(os.path.dirname(sys.executable), "overlayd")   # the installed entry point
CONFIGURATION = os.path.join(DOCS, "configuration.md")
LAB = os.path.join(DOCS, "lab.md")

_OPTION_LINE = re.compile(r"^  (?:-[A-Za-z], )?(--[a-z0-9][a-z0-9-]*)")
_FLAG = re.compile(r"--[a-z0-9][a-z0-9-]*")


def _markdown_files() -> list[str]:
    return [os.path.join(REPO, "README.md")] + sorted(
        os.path.join(DOCS, f) for f in os.listdir(DOCS) if f.endswith(".md"))


@functools.lru_cache(maxsize=None)
def help_text(*command: str) -> str:
    proc = subprocess.run([OVERLAYD, *command, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"overlayd {' '.join(command)} --help failed:\n{proc.stderr}"
    return proc.stdout


def help_flags(*command: str) -> set[str]:
    """The options argparse lists (not flags merely mentioned in a help string), without --help."""
    flags = {m.group(1) for line in help_text(*command).splitlines() if (m := _OPTION_LINE.match(line))}
    return flags - {"--help"}


@functools.lru_cache(maxsize=None)
def subcommands() -> tuple[str, ...]:
    text = help_text()
    section = text[text.index("subcommands:"):]
    return tuple(re.findall(r"^  overlayd ([a-z][a-z-]*)", section, re.M))


@functools.lru_cache(maxsize=None)
def lab_verbs() -> tuple[str, ...]:
    return tuple(re.search(r"\{([a-z,-]+)\}", help_text("lab")).group(1).split(","))


@functools.lru_cache(maxsize=None)
def sub_verbs(*command: str) -> tuple[str, ...]:
    """The verbs under a subcommand or a verb (`overlayd lab pod {add,del}`, `overlayd policy
    {explain,log}`), if it has any."""
    m = re.search(r"^usage:[^{\n]*\{([a-z,-]+)\}", help_text(*command), re.M)
    return tuple(m.group(1).split(",")) if m else ()


def known_flags(command: tuple[str, ...]) -> set[str]:
    if command[:1] == ("lab",) and len(command) == 1:
        return set().union(*(help_flags("lab", v) for v in lab_verbs()),
                           *(help_flags("lab", v, w) for v in lab_verbs() for w in sub_verbs("lab", v)))
    return help_flags(*command)


def documented_flags(path: str, marker: str) -> set[str]:
    """Flags in the first cell of every row of the table after `<!-- flags: marker -->`."""
    text = open(path).read()
    tag = f"<!-- flags: {marker} -->"
    assert tag in text, f"{os.path.relpath(path, REPO)} has no flag table {tag!r}"
    rows = text[text.index(tag) + len(tag):].lstrip("\n").split("\n\n", 1)[0].splitlines()
    assert rows and rows[0].startswith("|"), f"{tag} must be followed by a table"
    return {f for row in rows[2:] for f in _FLAG.findall(row.split("|")[1])}


def _where(command: tuple[str, ...]) -> tuple[str, str]:
    if command and command[0] == "lab":
        return LAB, "overlayd lab"
    return CONFIGURATION, " ".join(("overlayd",) + command)


def _commands() -> list[tuple[str, ...]]:
    return [()] + [(s,) for s in subcommands()]


@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(("overlayd",) + c))
def test_every_flag_in_help_is_documented_and_no_documented_flag_is_gone(command):
    path, marker = _where(command)
    documented = documented_flags(path, marker)
    known = known_flags(command)
    # subcommands that take the daemon's lease-store flags may leave them to the daemon's table
    shared = documented_flags(CONFIGURATION, "overlayd") & help_flags() if command else set()
    missing = sorted(known - documented - shared)
    gone = sorted(documented - known)
    where = os.path.relpath(path, REPO)
    assert not missing, f"`{marker} --help` lists {missing}, not documented in the {marker!r} table of {where}"
    assert not gone, f"the {marker!r} table of {where} documents {gone}, which `{marker} --help` no longer has"


def _command_lines(text: str) -> list[str]:
    """`overlayd ...` as written in fenced code blocks (continuations joined) and inline code."""
    found = []
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.M | re.S)
    for block in fenced:
        found += block.replace("\\\n", " ").splitlines()
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S)
    found += re.findall(r"`([^`\n]*)`", prose)
    code = [re.sub(r"(^|\s)#.*", "", line) for line in found]       # shell comments are prose
    return [line for line in code if "overlayd" in line.split()]


def _invocation(line: str) -> tuple[tuple[str, ...], list[str]]:
    words = re.split(r"\s+|(?=[#|;])", line)
    words = words[len(words) - words[::-1].index("overlayd"):]       # the last: `-c overlayd -- overlayd ...`
    command: tuple[str, ...] = ()
    if words and words[0] in subcommands():
        command = (words.pop(0),)
        # verbs below it, as deep as they go: `lab pod add`, `policy explain`
        while words and words[0] in sub_verbs(*command):
            command += (words.pop(0),)
    flags = []
    for w in words:
        if w.startswith(("#", "|", ";", "&&")):
            break
        w = w.strip("[]()`'\",")
        if w.startswith("--"):
            flags.append(w.split("=", 1)[0])
    return command, flags


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: os.path.relpath(p, REPO))
def test_every_overlayd_command_line_in_the_docs_uses_real_flags(path):
    bad = []
    for line in _command_lines(open(path).read()):
        command, flags = _invocation(line)
        known = help_flags(*command) | {"--help"}
        bad += [f"{f} in: {line.strip()}" for f in flags if f not in known]
    assert not bad, f"{os.path.relpath(path, REPO)} shows flags overlayd does not have:\n" + "\n".join(bad)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but - and _ dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: str) -> set[str]:
    text = re.sub(r"^```.*?^```", "", open(path).read(), flags=re.M | re.S)
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        slug = _slug(heading)
        out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return out


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: os.path.relpath(p, REPO))
def test_every_link_between_the_docs_resolves(path):
    text = re.sub(r"^```.*?^```", "", open(path).read(), flags=re.M | re.S)
    broken = []
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        dest = os.path.normpath(os.path.join(os.path.dirname(path), target)) if target else path
        if not os.path.exists(dest):
            broken.append(f"{target}: no such file")
        elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
            broken.append(f"{target}#{anchor}: no such heading")
    assert not broken, f"{os.path.relpath(path, REPO)}: broken links: {broken}"


def test_the_readme_stays_a_map():
    lines = open(os.path.join(REPO, "README.md")).read().count("\n")
    assert lines <= 300, f"README.md has {lines} lines; move details into docs/ and link them"
    assert "## The two commands" in open(os.path.join(REPO, "README.md")).read()
