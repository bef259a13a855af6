"""The package's structure: no import cycle between its modules, a schema at the bottom, and a light CLI start."""
import ast, os, re, subprocess, sys
from urllib.parse import unquote
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
    "`ephys2tx data list` (run with `python -X importtime`) loads neither torch nor scikit-learn nor Dask."
    heavy = ('torch', 'sklearn', 'dask', 'distributed', 'matplotlib')
    code = ("import sys; from ephys2tx.cli import main; rc = main(['data', 'list']); "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})), 'ephys2tx.data' in sys.modules)")
    r = subprocess.run([sys.executable, '-X', 'importtime', '-c', code], capture_output=True, text=True,
                       env={**os.environ, 'PYTHONPATH': str(PKG.parent)}, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'mouse_gouwens2020' in r.stdout
    assert r.stdout.strip().splitlines()[-1] == '[] True', r.stdout.strip().splitlines()[-1]
    # -X importtime: what the interpreter imported, in microseconds (`importlib.import_module` is not logged)
    logged = {line.rsplit('|', 1)[1].strip() for line in r.stderr.splitlines() if line.startswith('import time:')}
    assert not logged & set(heavy), logged & set(heavy)


def _code_lines(path: Path):
    "(number, line) of a module's code, without nbdev's generated docstring and `__all__` block."
    lines, in_all = path.read_text().splitlines(), False
    for i, line in enumerate(lines, 1):
        if i == 1 and line.startswith('"""'): continue
        if line.startswith('__all__'): in_all = True
        if in_all:
            in_all = not line.rstrip().endswith(']')
            continue
        yield i, line


def _modules():
    return sorted(p for p in PKG.glob('*.py') if p.stem not in ('__init__', '_modidx'))


def chapter_of(module: str) -> str:
    "The notebook a module is exported from (its name without `.ipynb`), read from the module's header."
    import re
    m = re.search(r'File to edit: \.\./nbs/(\S+)\.ipynb', (PKG / f'{module}.py').read_text())
    return m.group(1) if m else ''


def test_chapters_import_only_earlier_chapters():
    "The notebooks read in order: no module imports (at the top or in a function) one of a later chapter."
    graph = import_graph()
    late = [f"{m} ({chapter_of(m)}) imports {d} ({chapter_of(d)})" for m, deps in sorted(graph.items())
            for d in deps if d in graph and chapter_of(d) > chapter_of(m)]
    assert not late, late


def test_chapter_order_check_can_fail(tmp_path, monkeypatch):
    (tmp_path / 'early.py').write_text('# AUTOGENERATED! DO NOT EDIT! File to edit: ../nbs/01_early.ipynb.\n'
                                       'from .late import x\n')
    (tmp_path / 'late.py').write_text('# AUTOGENERATED! DO NOT EDIT! File to edit: ../nbs/09_late.ipynb.\n')
    monkeypatch.setattr(sys.modules[__name__], 'PKG', tmp_path)
    with pytest.raises(AssertionError, match='early'): test_chapters_import_only_earlier_chapters()


def wide_calls(path: Path, most: int = 5) -> list:
    "Calls in `path` that pass more than `most` positional arguments: 'file:line callee (n)'."
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and len(node.args) > most:
            out.append(f"{path.name}:{node.lineno} {ast.unparse(node.func)} ({len(node.args)})")
    return out


def test_no_call_with_more_than_five_positional_arguments(tmp_path):
    "Past five, arguments are passed by name: a call reads without its callee's signature at hand."
    p = tmp_path / 'm.py'
    p.write_text('f(1, 2, 3, 4, 5)\ng(1, 2, 3, 4, 5, 6)\n')
    assert wide_calls(p) == ['m.py:2 g (6)']
    wide = sum((wide_calls(f) for f in sorted(PKG.glob('*.py'))), [])
    assert not wide, wide


def test_one_name_per_idea():
    "The seed of randomness is `random_state` and the number of worker processes `n_workers`, everywhere."
    other = {'seed': 'random_state', 'n_jobs': 'n_workers', 'pretrain_seed': 'pretrain_random_state'}
    bad = []
    for f in sorted(PKG.glob('*.py')):
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                bad += [f"{f.name}:{node.lineno} {node.name}({p.arg}): use {other[p.arg]}"
                        for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg in other]
            elif isinstance(node, ast.ClassDef):   # dataclass fields
                bad += [f"{f.name}:{s.lineno} {node.name}.{s.target.id}: use {other[s.target.id]}" for s in node.body
                        if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name) and s.target.id in other]
    assert not bad, bad


def export_cell_sizes(nbs: Path = PKG.parent / 'nbs') -> dict:
    "`{notebook: [lines of each export cell]}`: non-blank lines, the `#|` directives not counted."
    import json, re
    out = {}
    for f in sorted(nbs.glob('[0-9]*.ipynb')):
        cells = [''.join(c['source']) for c in json.loads(f.read_text())['cells'] if c['cell_type'] == 'code']
        out[f.name] = [len([l for l in s.splitlines() if l.strip() and not l.strip().startswith('#|')])
                       for s in cells if re.match(r'\s*#\|\s*export', s)]
    return out


def test_export_cells_are_nbdev_sized():
    "About one public symbol an export cell: the median export cell is at most 10 lines, none over 60."
    import statistics
    sizes = export_cell_sizes()
    every = sum(sizes.values(), [])
    assert statistics.median(every) <= 10, statistics.median(every)
    big = {nb: max(s) for nb, s in sizes.items() if s and max(s) > 60}
    assert not big, big


def test_no_line_over_120_characters():
    long = [f'{p.name}:{i}' for p in _modules() for i, line in _code_lines(p) if len(line) > 120]
    assert not long, f'{len(long)} lines over 120 characters: {long[:20]}'


def test_no_semicolon_joined_statements():
    import io, tokenize
    found = []
    for p in _modules():
        for t in tokenize.generate_tokens(io.StringIO(p.read_text()).readline):
            if t.type == tokenize.OP and t.string == ';': found.append(f'{p.name}:{t.start[0]}')
    assert not found, f'semicolon-joined statements at {found[:20]}'


PROCESS_WORDS = r'later issue|the lead\b|target [0-9]|step [0-9] of|filled in later'


def test_no_process_words_in_notebooks_reports_or_code():
    import re
    root = PKG.parent
    files = [*root.glob('nbs/*.ipynb'), *root.glob('nbs/_reports/*.ipynb'), *_modules()]
    hits = [f'{f.relative_to(root)}: {m.group(0)!r}' for f in files
            for m in re.finditer(PROCESS_WORDS, f.read_text(), flags=re.I)]
    assert not hits, hits


# The README is the front door: short, with the commands a reader needs, and links that lead somewhere.
FRONT_DOOR_COMMANDS = ('pip install -e .', 'make test', 'make reproduce', 'make docs', 'ephys2tx predict',
                       'ephys2tx train', 'ephys2tx adapt', 'ephys2tx evaluate', 'ephys2tx transfer',
                       'ephys2tx reproduce', 'ephys2tx docs')
DOC_FILES = ('README.md', 'CONTRIBUTING.md', 'bench/README.md', 'nbs/guides/*.md')


def _local_links(md: str) -> list:
    "Targets of the Markdown links and images of `md` that point into the repository (no scheme, no bare anchor)."
    targets = re.findall(r'!?\[[^\]]*\]\(([^)\s]+)\)', re.sub(r'```.*?```', '', md, flags=re.S))
    return [t.split('#')[0] for t in targets if not re.match(r'[a-z]+:|#', t)]


def test_local_links_are_read():
    md = '[a](nbs/x.ipynb) ![i](images/y.png) [w](https://nbdev.fast.ai) [s](#top) [f](b.md#part)\n```\n[c](no.md)\n```'
    assert _local_links(md) == ['nbs/x.ipynb', 'images/y.png', 'b.md']


def test_readme_is_a_short_front_door():
    readme = (PKG.parent / 'README.md').read_text()
    n = len(readme.splitlines())
    assert n < 200, f'README.md has {n} lines: the long sections belong on the docs pages'
    missing = [c for c in FRONT_DOOR_COMMANDS if c not in readme]
    assert not missing, f'README.md does not show {missing}'
    assert 'nbs/images/transfer_curve.png' in readme and '```python' in readme


def test_every_link_of_the_docs_to_a_repository_file_exists():
    root = PKG.parent
    docs = sorted({p for pat in DOC_FILES for p in root.glob(pat)})
    assert root / 'README.md' in docs and len(docs) >= 5
    broken = [f'{d.relative_to(root)} -> {t}' for d in docs for t in _local_links(d.read_text())
              if not (d.parent / unquote(t)).exists()]
    assert not broken, broken


def test_no_process_words_or_machine_paths_in_the_docs():
    root = PKG.parent
    for d in sorted({p for pat in DOC_FILES for p in root.glob(pat)}):
        text = d.read_text()
        assert not re.search(PROCESS_WORDS, text, flags=re.I), d
        assert '/work/' not in text, f'{d.relative_to(root)} names a path of one machine'
