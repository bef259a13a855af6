"The reproduce job: caching, resuming after a failing stage, notebook errors that name the cell, missing results."
import json, os, re, shutil, sys
from pathlib import Path
import nbformat
import pandas as pd
import pytest
import ephys2tx.reproduce as R
import ephys2tx.stages as S
from ephys2tx.cli import main
from ephys2tx.data import DataError

REPORTS = Path(R.REPORTS_DIR)


@pytest.fixture
def stages(monkeypatch):
    "An empty stage registry for the test, no plugin loaded into it (the package's stages are restored afterwards)."
    monkeypatch.setattr(S, 'STAGES', {})
    monkeypatch.setattr(S, 'PLUGINS', ())
    return S.STAGES


def _nb(path, cells, params='x = 1'):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(params, metadata={'tags': ['parameters']})] + \
               [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)
    return path


def test_data_stage_cached_then_report_rerun(tmp_path, mirror):
    out = tmp_path / 'run'
    recs = R.reproduce(out=out, quick=True, stages='data', data_dir=mirror, progress=False, echo=False)
    assert [r['status'] for r in recs] == ['computed']
    d = out / 'data'
    marker = json.loads((d / 'stage.json').read_text())
    assert marker['inputs']['version'] and 'mouse_gouwens2020/efeature.csv' in marker['inputs']['data']
    counts = pd.read_csv(d / 'class_counts.csv', index_col=0)
    # the stage's tables agree with the data layer's own QC
    from ephys2tx.data import load_cells
    assert counts.loc['total', 'human'] == len(load_cells('human', data_dir=mirror, progress=False))
    html = (out / 'reports' / 'data_qc.html').read_text()
    assert html.count('src="data:image/png;base64,') >= 2, 'both figures must be embedded'
    assert 'too many missing features' in html and '<table' in html
    head = pd.read_csv(out / 'headline.csv')
    assert list(head.result) == ['mouse', 'human', 'transfer'] and head.cells[0] == counts.loc['total', 'mouse']
    mtime = (d / 'class_counts.csv').stat().st_mtime_ns

    # unchanged inputs and config: nothing recomputed, nothing re-executed
    recs = R.reproduce(out=out, quick=True, stages='data', data_dir=mirror, progress=False, echo=False)
    assert [r['status'] for r in recs] == ['cached'] and not recs[0]['reported']
    assert (d / 'class_counts.csv').stat().st_mtime_ns == mtime
    log = (out / 'run.log').read_text()
    assert 'not recomputed' in log and log.count('total wall time') == 2

    # a parameter the data stage does not use (repeats) leaves its key alone but reruns its report
    recs = R.reproduce(out=out, quick=True, repeats=2, stages='data', data_dir=mirror, progress=False, echo=False)
    assert recs[0]['status'] == 'cached' and recs[0]['reported']
    assert (d / 'class_counts.csv').stat().st_mtime_ns == mtime


def test_failing_stage_stops_keeps_finished_and_resumes(tmp_path, stages):
    out, calls, flag = tmp_path / 'run', tmp_path / 'calls.txt', tmp_path / 'broken.flag'
    flag.touch()

    def stage(name, fail=False):
        def run(ctx):
            with open(calls, 'a') as f: f.write(name + '\n')
            if fail and flag.exists(): raise DataError(f"{ctx.dir/'input.csv'}: column 'sag' is not numeric")
            pd.DataFrame({'x': [1]}).to_csv(ctx.dir / 'table.csv', index=False)
        return R.Stage(name, name.title(), run=run, outputs=('table.csv',), config=lambda r: dict(random_state=r.random_state))

    for s in [stage('first'), stage('broken', fail=True), stage('third')]: S.register_stage(s)
    with pytest.raises(R.StageError) as e:
        R.reproduce(out=out, data_dir=tmp_path, progress=False, echo=False, device='cpu')
    msg = str(e.value)
    assert "stage 'broken' failed" in msg and 'input.csv' in msg and "column 'sag'" in msg
    assert (out / 'first' / 'stage.json').is_file()                    # what finished is kept
    assert not (out / 'broken' / 'stage.json').exists() and not (out / 'third').exists()
    index = (out / 'index.html').read_text()
    assert 'The run stopped' in index and 'failed' in index
    assert 'FAILED' in (out / 'run.log').read_text()

    flag.unlink()                                                      # fix the problem and rerun
    recs = R.reproduce(out=out, data_dir=tmp_path, progress=False, echo=False, device='cpu')
    assert [r['status'] for r in recs] == ['cached', 'computed', 'computed']
    assert calls.read_text().split() == ['first', 'broken', 'broken', 'third']   # 'first' ran once

    # a changed configuration (random_state) recomputes every stage that depends on it
    recs = R.reproduce(out=out, random_state=1, data_dir=tmp_path, progress=False, echo=False, device='cpu')
    assert [r['status'] for r in recs] == ['computed'] * 3


def test_stage_without_its_outputs_fails(tmp_path, stages):
    S.register_stage(R.Stage('lazy', 'Lazy', run=lambda ctx: None, outputs=('results.parquet',)))
    with pytest.raises(R.StageError, match=r"stage 'lazy' finished without writing .*lazy/results.parquet"):
        R.reproduce(out=tmp_path, progress=False, echo=False, device='cpu')


def test_notebook_error_names_notebook_and_cell(tmp_path, stages):
    rep = tmp_path / 'reports'; rep.mkdir()
    nb = _nb(rep / 'bad.ipynb', ['import math', 'y = 1 / (x - 1)  # fails while x == 1', 'print(y)'])
    calls = []
    S.register_stage(R.Stage('s', 'S', run=lambda ctx: calls.append(1) or (ctx.dir / 't.csv').write_text('a\n1\n'),
                             outputs=('t.csv',), report='bad.ipynb'))
    out = tmp_path / 'run'
    with pytest.raises(R.StageError) as e:
        R.reproduce(out=out, reports_dir=rep, progress=False, echo=False, device='cpu')
    msg = str(e.value)
    assert 'bad.ipynb failed in cell 3' in msg and 'ZeroDivisionError' in msg and "'y = 1 / (x - 1)" in msg
    assert (out / 'reports' / 'bad.ipynb').is_file()                   # the executed notebook with the traceback
    assert (out / 's' / 'stage.json').is_file() and len(calls) == 1    # the computation is kept

    _nb(nb, ['import math', 'y = 1 / (x - 2)', 'print(y)'])            # fix the notebook and rerun
    recs = R.reproduce(out=out, reports_dir=rep, progress=False, echo=False, device='cpu')
    assert recs[0]['status'] == 'cached' and recs[0]['reported'] and len(calls) == 1
    assert (out / 'reports' / 'bad.html').is_file()


@pytest.mark.parametrize('report,missing', [('gouwens.ipynb', 'gouwens/results.parquet'),
                                            ('models.ipynb', 'models/results.parquet'),
                                            ('attention.ipynb', 'attention/summary_mouse.csv'),
                                            ('transfer.ipynb', 'transfer/results.parquet')])
def test_report_without_results_names_the_missing_file(tmp_path, report, missing):
    params = R.RunConfig(out=tmp_path / 'empty', device='cpu').params()
    with pytest.raises(R.StageError) as e:
        R.execute_report(REPORTS / report, tmp_path / report, params)
    msg = str(e.value)
    assert report in msg and 'MissingResultsError' in msg and missing in msg


def test_every_report_has_the_parameters_cell():
    want = {'species', 'repeats', 'folds', 'random_state', 'device', 'data_dir', 'out_dir', 'quick'}
    for st in R.load_stages().values():
        nb = nbformat.read(REPORTS / st.report, as_version=4)
        cells = [c for c in nb.cells if 'parameters' in c.metadata.get('tags', [])]
        assert len(cells) == 1, st.report
        names = {l.split('=')[0].strip() for l in cells[0].source.splitlines() if '=' in l}
        assert names == want, (st.report, names ^ want)


def test_kernel_runs_this_interpreter():
    from jupyter_client.kernelspec import KernelSpecManager
    name = R.ensure_kernel()
    assert Path(KernelSpecManager().get_kernel_spec(name).argv[0]).resolve() == Path(sys.executable).resolve()


def test_stages_are_defined_by_their_chapters_in_pipeline_order(tmp_path):
    "The generic pipeline imports no chapter; each stage comes from its chapter's module, in the explicit order."
    import ast
    src = Path(R.__file__).read_text()
    imported = {n.module.split('.')[-1] for n in ast.walk(ast.parse(src)) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Import) for a in n.names}
    assert not imported & {'gouwens', 'bilstm', 'interpret', 'transfer', 'ephys2tx.bilstm', 'ephys2tx.transfer'}
    stages = R.load_stages()
    assert list(stages) == ['data', 'gouwens', 'models', 'attention', 'transfer']
    where = {s.name: s.run.__module__ for s in stages.values()}
    assert where == dict(data='ephys2tx.data', gouwens='ephys2tx.gouwens', models='ephys2tx.bilstm',
                         attention='ephys2tx.interpret', transfer='ephys2tx.transfer')
    core = ('ephys2tx.schema', 'ephys2tx.data', 'ephys2tx.features', 'ephys2tx.evaluation', 'ephys2tx.gouwens',
            'ephys2tx.nets', 'ephys2tx.training', 'ephys2tx.bilstm', 'ephys2tx.record')
    assert stages['data'].requires == ('ephys2tx.schema', 'ephys2tx.data')
    # the code behind each key is derived from the stage's module and the models it runs (`stage_code`)
    run = R.RunConfig(out=tmp_path, quick=True, device='cpu')
    code = {n: set(S.stage_code(s, s.config(run))) for n, s in stages.items()}
    assert code['data'] == {'ephys2tx.schema', 'ephys2tx.data'}
    assert set(core) <= code['models'] and set(core) | {'ephys2tx.transfer'} <= code['transfer']
    # the attention maps use the BiLSTM alone: the record model's code is not theirs
    assert set(core) - {'ephys2tx.record'} | {'ephys2tx.interpret'} <= code['attention']


def test_stage_order_does_not_depend_on_registration(stages):
    for s in [R.Stage('c', 'C'), R.Stage('b', 'B', order=2), R.Stage('a', 'A', order=1), R.Stage('d', 'D')]:
        S.register_stage(s)
    assert list(S.STAGES) == ['a', 'b', 'c', 'd']
    assert [s.name for s in R.select_stages('d,a')] == ['a', 'd']


def test_cli_options_are_the_parameters_of_reproduce(capsys):
    from ephys2tx.cli import build_parser
    a = build_parser('reproduce').parse_args(['reproduce', '--quick', '--no-progress', '--n-workers', '1', '--folds',
                                              '2', '--repeats', '1', '--seed', '3', '--device', 'cpu', '--force',
                                              '--strict', '--stages', 'data', '--reports-dir', 'r', '--out', 'o'])
    assert (a.quick, a.progress, a.n_workers, a.folds, a.repeats, a.random_state, a.device, a.force, a.strict, a.stages,
            a.reports_dir, a.out, a.summarize) == (True, False, 1, 2, 1, 3, 'cpu', True, True, 'data', 'r', 'o', False)
    d = build_parser('reproduce').parse_args(['reproduce'])
    assert (d.out, d.quick, d.progress, d.repeats, d.folds, d.n_workers) == ('reports_out', False, True, None, None, 2)
    with pytest.raises(SystemExit):
        build_parser('reproduce').parse_args(['reproduce', '--help'])
    out = capsys.readouterr().out
    assert 'data,gouwens,models,attention,transfer' in out and 'CV folds (default 3 with --quick, else 5)' in out


def test_cli(tmp_path, capsys, stages):
    S.register_stage(R.Stage('ok', 'OK', run=lambda ctx: (ctx.dir / 't.csv').write_text('a\n1\n'), outputs=('t.csv',)))
    assert main(['reproduce', '--out', str(tmp_path), '--no-progress', '--device', 'cpu']) == 0
    assert 'index.html' in capsys.readouterr().out and (tmp_path / 'index.html').is_file()
    assert main(['reproduce', '--out', str(tmp_path), '--stages', 'nope', '--no-progress']) == 2
    assert "unknown stage(s) ['nope']" in capsys.readouterr().err
    S.register_stage(R.Stage('boom', 'Boom', run=lambda ctx: 1 / 0))
    assert main(['reproduce', '--out', str(tmp_path), '--no-progress', '--device', 'cpu']) == 1
    err = capsys.readouterr().err
    assert "stage 'boom' failed: ZeroDivisionError" in err and 'rerun to resume' in err
    assert err.strip().splitlines()[-2:] == ["ephys2tx: error: stage 'boom' failed: ZeroDivisionError: division by zero",
                                            R.StageError.hint]


def test_cli_expected_warnings_go_to_the_run_log(tmp_path, capsys, stages):
    "A stage's expected warnings: counted into run.log with one summary line, not shown; an unexpected one shows."
    import warnings
    clip = "non-positive values of log feature(s) ['{}'] (positive in every training cell) were set to the minimum"
    def run(ctx):
        for f in ('sag', 'tau', 'sag'): warnings.warn(clip.format(f))
        warnings.warn('a warning nobody expects', RuntimeWarning)
        (ctx.dir / 't.csv').write_text('a\n1\n')
    S.register_stage(R.Stage('w', 'Warns', run=run, outputs=('t.csv',)))
    with pytest.warns(Warning) as shown:    # what reaches the usual `showwarning` (the terminal, outside pytest)
        assert main(['reproduce', '--out', str(tmp_path), '--no-progress', '--device', 'cpu']) == 0
    assert [(w.category, str(w.message)) for w in shown] == [(RuntimeWarning, 'a warning nobody expects')]
    err = capsys.readouterr().err
    assert 'non-positive' not in err
    assert err.strip().splitlines()[-1] == f"3 expected warnings (1 kind) written to {tmp_path / 'run.log'}"
    log = (tmp_path / 'run.log').read_text()
    assert log.index('[w] computed in') < log.index('3 expected warnings (1 kind), not shown on the terminal')
    assert "2 x UserWarning: " + clip.format('sag') in log and "1 x UserWarning: " + clip.format('tau') in log
    assert f"first at {__file__}:" in log and 'nobody expects' not in log


def test_headline_from_results_tables(tmp_path):
    "Headline rows from the stages' tables: best model per species; per size, best transfer vs the baseline of record."
    tr = [dict(model=st, size=z, repeat=0, fold=f, n_train=100, n_pool=540, n_test=135, macro_f1=v + 0.02 * f)
          for st, v in [('nn_human', 0.7), ('best_human', 0.6), ('nn_finetune', 0.55)] for z in ['20', '80', 'all']
          for f in range(3)]
    for name, rows in [('models', [dict(species=s, protocol='stratified', model=m, repeat=0, fold=f, macro_f1=v + 0.01 * f)
                                   for s, base in [('mouse', 0.7), ('human', 0.6)] for m, v in [('rf', base), ('bilstm', base + 0.05)]
                                   for f in range(3)]), ('transfer', tr)]:
        d = tmp_path / name; d.mkdir()
        pd.DataFrame(rows).to_parquet(d / 'results.parquet'); (d / 'stage.json').write_text('{}')
    h = R.headline_table(tmp_path).set_index('result')
    assert h.loc['mouse', 'model'] == 'bilstm' and h.loc['human', 'model'] == 'bilstm'
    assert h.loc['mouse', 'macro_f1'] == '0.760 ± 0.010'
    for z in ['20', '80', 'all']:
        row = h.loc[f'transfer (n = {z})']
        assert row['model'] == 'nn_finetune'                       # not the human-only nn_human
        assert row['versus'].startswith('best_human 0.620') and abs(row['gain'] + 0.05) < 1e-9 and row['n'] == 3
    assert pd.isna(h.loc['mouse', 'cells'])   # no data stage ran here


def test_params_table_paths_relative_to_the_run_folder(tmp_path):
    "One row per report parameter, in order; the run folder is '.', the data folder relative to it, never absolute."
    out, data = tmp_path / 'runs' / 'quick', tmp_path / 'mirror'
    params = R.RunConfig(out=out, quick=True, device='cpu', data_dir=data).params()
    t = R.params_table(params)
    assert t.columns.tolist() == ['parameter', 'value'] and t.parameter.tolist() == list(params)
    v = dict(zip(t.parameter, t.value))
    assert v['out_dir'] == '.' and v['data_dir'] == '../../mirror' and v['quick'] == 'True' and v['folds'] == '3'
    assert not any(x.startswith('/') or str(tmp_path) in x for x in t.value)
    assert R.params_table(dict(params, data_dir=str(out / 'data')), out).set_index('parameter').value['data_dir'] == 'data'
    assert R.params_table(dict(params, data_dir=None)).value[list(params).index('data_dir')] == '(default)'
    # sharing only the filesystem root, a relative path would spell out the absolute one: shown by its name
    assert R.rel_path('/srv/mirror', out) == '…/mirror'


def _summary(nb_path) -> str:
    "The Markdown that the report's `summary` cell displayed."
    cells = [c for c in nbformat.read(nb_path, as_version=4).cells if 'summary' in c.metadata.get('tags', [])]
    assert len(cells) == 1, f'{nb_path.name}: one cell tagged summary'
    return '\n'.join(o['data']['text/markdown'] for o in cells[0].outputs if 'text/markdown' in o.get('data', {}))


def test_data_qc_report_opens_with_the_counts_of_its_tables(tmp_path, mirror):
    "The opening sentences of data & QC state the after-QC and dropped counts of the stage's tables, read when it runs."
    out = tmp_path / 'run'
    R.reproduce(out=out, quick=True, stages='data', data_dir=mirror, progress=False, echo=False)
    counts = pd.read_csv(out / 'data' / 'class_counts.csv', index_col=0)
    qc = pd.read_csv(out / 'data' / 'qc_report.csv')
    text = _summary(out / 'reports' / 'data_qc.ipynb').replace('*', '')
    for sp in ['mouse', 'human']:
        assert f"{counts.loc['total', sp]:,} {sp} cells" in text, text
        q = qc[qc.species == sp]; top = q.loc[q['cells dropped'].idxmax()]
        assert q['cells remaining'].iloc[-1] == counts.loc['total', sp]
        assert f"{q['cells dropped'].sum():,} of the {q['cells remaining'].iloc[0] + q['cells dropped'].iloc[0]:,} {sp}" in text
        assert f"most, {top['cells dropped']:,}, for {top['reason']}" in text, text
    html = (out / 'reports' / 'data_qc.html').read_text(encoding='utf-8')
    first = f"{counts.loc['total', 'mouse']:,}</strong> mouse cells"
    assert html.index('Report: data and quality control') < html.index(first) < html.index('Parameters of this run') \
        < html.index('The QC steps')
    assert re.search(r'<td>out_dir</td>\s*<td>\.</td>', html)
    assert re.search(rf"<td>data_dir</td>\s*<td>{re.escape(R.rel_path(mirror, out))}</td>", html)

    # the numbers are read from the tables when the report runs, not typed in: doctored tables, other sentences
    fake = tmp_path / 'doctored'; shutil.copytree(out / 'data', fake / 'data')
    counts.loc['total', ['mouse', 'human']] = [12345, 678]; counts.to_csv(fake / 'data' / 'class_counts.csv')
    params = R.RunConfig(out=fake, quick=True, device='cpu', data_dir=mirror).params()
    text = _summary(R.execute_report(REPORTS / 'data_qc.ipynb', fake / 'reports' / 'data_qc.ipynb', params)).replace('*', '')
    assert '12,345 mouse cells and 678 human cells' in text, text


def test_every_report_opens_with_its_summary_and_parameters():
    "Title, then the cell that states the findings, then the parameters table, before any section of the report."
    for st in R.load_stages().values():
        cells = nbformat.read(REPORTS / st.report, as_version=4).cells
        assert cells[0].cell_type == 'markdown' and cells[0].source.startswith('# Report:'), st.report
        tags = [c.metadata.get('tags', []) for c in cells]
        i_sum = next(i for i, t in enumerate(tags) if 'summary' in t)
        i_par = next(i for i, t in enumerate(tags) if 'run-parameters' in t)
        i_sec = next(i for i, c in enumerate(cells) if c.cell_type == 'markdown' and c.source.startswith('## '))
        assert i_sum < i_par < i_sec, (st.report, i_sum, i_par, i_sec)
        assert 'display(Markdown(' in cells[i_sum].source and 'params_table(' in cells[i_par].source, st.report
        assert not any(c.cell_type == 'markdown' for c in cells[1:i_sum]), f'{st.report}: prose before the summary'


def test_models_stage_reuses_the_gouwens_fits(tmp_path, mirror, monkeypatch):
    "rf_spca on the mouse folds is fitted once: by the gouwens stage; the models stage reads those runs."
    import ephys2tx.bilstm
    monkeypatch.setattr(ephys2tx.bilstm, 'MODEL_COMPARISON', ['rf_spca', 'logreg'])
    out = tmp_path / 'run'
    R.reproduce(out=out, quick=True, folds=2, stages='gouwens,models', data_dir=mirror, progress=False, echo=False,
                n_workers=1)
    log = (out / 'run.log').read_text()
    assert re.search(r'mouse: 2 runs fitted, 0 read from the shared run store', log), log[-2000:]   # gouwens
    assert re.search(r'mouse: 2 runs fitted, 2 read from the shared run store', log), log[-2000:]   # models: logreg only
    g = pd.read_parquet(out / 'gouwens' / 'results.parquet')
    m = pd.read_parquet(out / 'models' / 'results.parquet')
    m = m[(m.model == 'rf_spca') & (m.species == 'mouse')]
    pd.testing.assert_series_equal(g.sort_values('fold').macro_f1.reset_index(drop=True),
                                   m.sort_values('fold').macro_f1.reset_index(drop=True))
    fresh = S.runs_store(R.RunConfig(out=out, quick=True, folds=3, data_dir=mirror), 'mouse')
    assert not fresh.exists()                                  # other folds: another store, nothing reused
