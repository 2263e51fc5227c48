#!/usr/bin/env python3
"""The house rules no compiler checks, over `src/`:

1. No cycle between modules. Each file is a module; an edge A -> B is a `use` line in A's non-test
   code naming a path inside B (`crate::`, `super::`, `self::`). A module using its own children is
   the tree itself and is not an edge; a child using its parent or a sibling is.
2. No file over LIMIT lines of non-test code (a file's lines before its first `#[cfg(test)]`;
   files declared as `#[cfg(test)] mod x;` are test code throughout).

Exit 1 with each finding on its own line; 0 and a one-line count when all holds.
"""

import os
import re
import sys

LIMIT = 600
SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

USE_START = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+")
CFG_TEST = re.compile(r"^\s*#\[cfg\(test\)\]")
MOD_DECL = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+([A-Za-z0-9_]+)\s*;")


def module_files():
    """Map module path (tuple of names, crate root = ()) -> file path."""
    mods = {}
    for dirpath, _, files in os.walk(SRC):
        for name in files:
            if not name.endswith(".rs"):
                continue
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, SRC)[:-3].split(os.sep)
            if rel == ["main"] or rel[0] == "bin":
                continue
            if rel == ["lib"]:
                path = ()
            elif rel[-1] == "mod":
                path = tuple(rel[:-1])
            else:
                path = tuple(rel)
            mods[path] = full
    return mods


def split_test(lines):
    """(non-test lines, names of child modules declared test-only)."""
    test_children = set()
    body = []
    pending_cfg = False
    for line in lines:
        if pending_cfg:
            m = MOD_DECL.match(line)
            if m:
                test_children.add(m.group(1))
                pending_cfg = False
                continue
            # `#[cfg(test)]` on anything else (an inline `mod tests {`, a fn): the rest of the file
            # is test code by the house convention of tests at the bottom.
            break
        if CFG_TEST.match(line):
            pending_cfg = True
            continue
        body.append(line)
    return body, test_children


def use_statements(lines):
    """Whole `use ...;` statements (they may span lines), comments dropped."""
    out, cur = [], None
    for raw in lines:
        line = raw.split("//", 1)[0]
        if cur is None:
            if USE_START.match(line):
                cur = line
            else:
                continue
        else:
            cur += " " + line
        if ";" in cur:
            out.append(USE_START.sub("", cur, count=1).split(";", 1)[0])
            cur = None
    return out


def expand(tree):
    """`a::{b, c::{d, e}}` -> ["a::b", "a::c::d", "a::c::e"] (aliases and globs kept as names)."""
    tree = re.sub(r"\s+", "", tree)
    i = tree.find("{")
    if i < 0:
        return [tree.split("as", 1)[0] if "::" in tree else tree]
    prefix, inner = tree[:i], tree[i + 1 : tree.rfind("}")]
    parts, depth, start = [], 0, 0
    for j, ch in enumerate(inner):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(inner[start:j])
            start = j + 1
    parts.append(inner[start:])
    out = []
    for p in parts:
        if p:
            out.extend(prefix + q for q in expand(p))
    return out


def resolve(path, here, mods):
    """The deepest existing module a `use` path names, or None outside the crate."""
    segs = [s for s in path.split("::") if s]
    if not segs:
        return None
    if segs[0] == "crate":
        base, segs = (), segs[1:]
    elif segs[0] in ("super", "self"):
        base = here
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
    else:
        return None  # an external crate, std, or a name already in scope
    best = base if base in mods else None
    cur = base
    for s in segs:
        cur = cur + (s,)
        if cur in mods:
            best = cur
        else:
            break
    return best


def main():
    mods = module_files()
    test_only = set()
    edges = {m: set() for m in mods}
    problems = []
    bodies = {}
    for m, f in mods.items():
        with open(f, encoding="utf-8") as fh:
            body, test_children = split_test(fh.read().splitlines())
        bodies[m] = body
        test_only.update(m + (c,) for c in test_children)
    for m, body in bodies.items():
        if any(m[: len(t)] == t for t in test_only):
            continue
        rel = os.path.relpath(mods[m], os.path.join(SRC, ".."))
        if len(body) > LIMIT:
            problems.append(f"{rel}: {len(body)} lines of non-test code (limit {LIMIT})")
        for stmt in use_statements(body):
            for p in expand(stmt):
                target = resolve(p, m, mods)
                if target is None or target == m:
                    continue
                if target[: len(m)] == m:
                    continue  # a module using its own descendants is the tree itself
                if any(target[: len(t)] == t for t in test_only):
                    continue
                edges[m].add(target)

    # Tarjan's strongly connected components: any component of two or more modules is a cycle.
    index, low, on, stack, sccs, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    for comp in sccs:
        names = sorted("::".join(c) or "crate" for c in comp)
        inside = set(comp)
        detail = "; ".join(
            f"{'::'.join(a) or 'crate'} -> {'::'.join(b) or 'crate'}"
            for a in sorted(comp)
            for b in sorted(edges[a] & inside)
        )
        problems.append(f"module cycle: {', '.join(names)} ({detail})")

    for p in problems:
        print(p)
    if problems:
        return 1
    n_edges = sum(len(e) for e in edges.values())
    print(f"modules ok: {len(mods)} files, {n_edges} use-edges, no cycle, none over {LIMIT} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
