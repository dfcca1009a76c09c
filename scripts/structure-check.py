#!/usr/bin/env python3
"""The code's shape, checked (issue 12): no daemon module imports a module
that imports it back, no function outside tests runs much past 80 lines
without a reason written beside it, and no store key is written as a literal
outside daemon/src/store/records.rs.

    python3 scripts/structure-check.py          # both checks; exit 1 on a finding
    python3 scripts/structure-check.py --list   # every long function, reasons included

A long function is allowed when its doc comment (the `///` lines above it)
has a line with "Long because", saying why it reads best whole. Modules are
the daemon's top-level ones (access, config, doctor, memory, provision,
runtime, store) and their direct children; an edge is any `crate::a::...`
path or `use crate::a` in a file of another module (tests excluded).
"""
import pathlib
import re
import sys

LIMIT = 90  # "much past 80"
ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / 'daemon' / 'src'
FN = re.compile(r'^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)')


def strip(line):
    line = re.sub(r'//.*', '', line)
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    return re.sub(r"'(\\.|[^'\\])'", "''", line)


def code_files(root):
    for p in sorted(root.rglob('*.rs')):
        if p.name == 'tests.rs' or 'tests' in p.relative_to(ROOT).parts[:2]:
            continue
        text = p.read_text()
        # Unit-test modules sit at the end of a file.
        m = re.search(r'^#\[cfg\(test\)\]', text, re.M)
        yield p, text[: m.start()] if m else text


def long_functions():
    for root in (SRC, ROOT / 'drivers' / 'src'):
        for p, text in code_files(root):
            lines = text.split('\n')
            i = 0
            while i < len(lines):
                m = FN.match(lines[i])
                if not m:
                    i += 1
                    continue
                depth, started, j = 0, False, i
                while j < len(lines):
                    c = strip(lines[j])
                    depth += c.count('{') - c.count('}')
                    started = started or '{' in c
                    if (started and depth <= 0) or (not started and c.rstrip().endswith(';')):
                        break
                    j += 1
                n = j - i + 1
                k = i - 1
                doc = []
                while k >= 0 and re.match(r'^\s*(///|#\[)', lines[k]):
                    doc.append(lines[k])
                    k -= 1
                reason = any('Long because' in d for d in doc)
                if n > LIMIT:
                    yield p.relative_to(ROOT), i + 1, m.group(6), n, reason
                i = j + 1 if started else i + 1


def module_of(p):
    parts = p.relative_to(SRC).with_suffix('').parts
    if parts[0] in ('bin', 'lib'):
        return None
    return parts[0]


def module_edges():
    """Module -> {module it imports: the first file that does}."""
    edges = {}
    names = {q.stem for q in SRC.iterdir() if q.stem not in ('bin', 'lib')}
    for p, text in code_files(SRC):
        a = module_of(p)
        if a is None:
            continue
        text = '\n'.join(re.sub(r'//.*', '', l) for l in text.split('\n'))
        used = set(re.findall(r'crate::(\w+)', text))
        for group in re.findall(r'use crate::\{([^}]*)\}', text):
            used |= set(re.findall(r'^\s*(\w+)', group, re.M)) | set(re.findall(r',\s*(\w+)', group))
        for b in sorted(used & names - {a}):
            edges.setdefault(a, {}).setdefault(b, p.relative_to(ROOT))
    return edges


def cycles():
    """Each import cycle among the modules, as a list of (module, file) steps."""
    edges = module_edges()
    found, seen = [], set()
    for start in sorted(edges):
        # Shortest way back to `start` (breadth first).
        paths = [[start]]
        back = None
        while paths and back is None:
            nxt = []
            for path in paths:
                for b in sorted(edges.get(path[-1], {})):
                    if b == start:
                        back = path
                        break
                    if b not in path:
                        nxt.append(path + [b])
                if back:
                    break
            paths = nxt
        if back and frozenset(back) not in seen:
            seen.add(frozenset(back))
            ring = back + [start]
            found.append([(ring[i], ring[i + 1], edges[ring[i]][ring[i + 1]]) for i in range(len(back))])
    return found


KEY_LITERAL = re.compile(r'b"[mastlu]/[^"]*"')


def scattered_store_keys():
    """Store keys written as literals outside store/records.rs, the one place
    the store's key layout is kept (issue 12): each (file, line, literal)."""
    for p, text in code_files(SRC):
        if p.relative_to(SRC).as_posix() == 'store/records.rs':
            continue
        for i, line in enumerate(text.split('\n')):
            for m in KEY_LITERAL.finditer(re.sub(r'//.*', '', line)):
                yield p.relative_to(ROOT), i + 1, m.group(0)


def main():
    listing = '--list' in sys.argv
    bad = 0
    for path, line, lit in scattered_store_keys():
        print(f'{path}:{line}: store key {lit} written outside daemon/src/store/records.rs')
        bad += 1
    for path, line, name, n, reason in long_functions():
        if listing or not reason:
            print(f'{path}:{line}: fn {name} is {n} lines' + (' (a reason is written)' if reason else ' with no "Long because" reason'))
        bad += not reason
    for ring in cycles():
        print('module cycle: ' + ', '.join(f'{a} imports {b} ({w})' for a, b, w in ring))
        bad += 1
    if bad:
        print(f'structure check: {bad} finding(s)')
        return 1
    print('structure check: no long function without a reason, no module cycle, no store key outside records.rs')
    return 0


if __name__ == '__main__':
    sys.exit(main())
