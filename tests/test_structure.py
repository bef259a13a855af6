"""The package's structure: no import cycle between its modules, a schema at the bottom, and a light CLI start."""
import ast, os, subprocess, sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / 'ephys2tx'


def _imports(path: Path) -> set:
    "Every ephys2tx module `path` imports, at the top or inside a function (`import ephys2tx` alone: none)."
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:   # from .x import y / from . import x
                mods = [base] if base else [a.name for a in node.names]
            elif base.startswith('ephys2tx.'):
                mods = [base.split('.', 1)[1]]
            elif base == 'ephys2tx':
                mods = [a.name for a in node.names if (PKG / f'{a.name}.py').exists()]
            else:
                mods = []
            out.update(m.split('.')[0] for m in mods)
        elif isinstance(node, ast.Import):
            out.update(a.name.split('.')[1] for a in node.names if a.name.startswith('ephys2tx.'))
    return out


def import_graph() -> dict:
    "`{module: modules of the package it imports}` over every module of the package."
    mods = {p.stem: p for p in PKG.glob('*.py') if p.stem not in ('__init__', '_modidx')}
    return {m: sorted(_imports(p) - {m}) for m, p in mods.items()}


def find_cycle(graph: dict):
    "One import cycle of `graph` as a list of modules (first == last), or None."
    state, stack = {}, []
    def visit(m):
        state[m] = 'open'; stack.append(m)
        for n in graph.get(m, ()):
            if state.get(n) == 'open': return stack[stack.index(n):] + [n]
            if n not in state and (c := visit(n)): return c
        state[m] = 'done'; stack.pop()
        return None
    for m in sorted(graph):
        if m not in state and (c := visit(m)): return c
    return None


def test_find_cycle_finds_a_cycle():
    assert find_cycle({'a': ['b'], 'b': ['c'], 'c': ['a']}) == ['a', 'b', 'c', 'a']
    assert find_cycle({'a': ['b'], 'b': [], 'c': ['a', 'b']}) is None


def test_imports_are_read_inside_functions(tmp_path):
    p = tmp_path / 'm.py'
    p.write_text('from .data import x\ndef f():\n    from ephys2tx.features import y\n    import ephys2tx.evaluation\n')
    assert _imports(p) == {'data', 'features', 'evaluation'}


def test_no_import_cycle():
    graph = import_graph()
    assert {'schema', 'data', 'features', 'evaluation'} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, 'import cycle: ' + ' -> '.join(cycle)


def test_schema_is_the_bottom_layer():
    graph = import_graph()
    assert graph['schema'] == [], f"ephys2tx.schema imports {graph['schema']}"
    assert graph['data'] == ['schema'], f"ephys2tx.data imports {graph['data']}"


def test_data_list_does_not_import_the_models():
    "`ephys2tx data list` (measured with `python -X importtime`) loads neither torch nor scikit-learn nor Dask."
    code = "from ephys2tx.cli import main; raise SystemExit(main(['data', 'list']))"
    r = subprocess.run([sys.executable, '-X', 'importtime', '-c', code], capture_output=True, text=True,
                       env={**os.environ, 'PYTHONPATH': str(PKG.parent)}, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'mouse_gouwens2020' in r.stdout
    loaded = {line.rsplit('|', 1)[1].strip() for line in r.stderr.splitlines() if line.startswith('import time:')}
    for heavy in ('torch', 'sklearn', 'dask', 'distributed', 'matplotlib'):
        assert heavy not in loaded, f"`ephys2tx data list` imports {heavy}"
    assert 'ephys2tx.data' in loaded
