"Cross-species transfer on the experiment core: strategies, equivalence with evaluate, resuming, Dask, CLI, bundle."
import json
from pathlib import Path
import numpy as np, pandas as pd
import pytest, torch

from ephys2tx.data import LABEL4
from ephys2tx.evaluation import Executor, Protocol, evaluate, fit_accepts, load_task, make_model, model_factory, splits
from ephys2tx.features import get_schema
from ephys2tx.transfer import (STRATEGIES, BASELINE, RECORD_STRATEGY, TRANSFER_PROTOCOL, gains_of, headline,
                               network_settings, source_cells, strategy_names, strategy_settings, transfer_experiment,
                               verdict_text)

torch.set_num_threads(1)


@pytest.fixture(scope='module')
def data(mirror):
    return load_task('human', data_dir=mirror), source_cells(data_dir=mirror)


def _fit(name, task, source, rows, unl=None, cache=None, random_state=0):
    net = network_settings(cache, device='cpu', tiny=True)
    m = make_model(name, 'human', random_state, **strategy_settings(name, net, tiny=True))
    kw = dict(source=source) if fit_accepts(m, 'source') else {}
    if unl is not None and fit_accepts(m, 'unlabelled'): kw['unlabelled'] = task.X.iloc[unl]
    return m.fit(task.X.iloc[rows], task.y[rows], **kw)


def test_every_strategy_fits_on_real_data(data, tmp_path):
    task, source = data
    sp = splits(task.y, protocol=Protocol(repeats=1, folds=4, random_state=2, sizes='40'))[0]
    for name in STRATEGIES:
        m = _fit(name, task, source, sp.train, sp.unlabelled, tmp_path)
        P = m.predict_proba(task.X.iloc[sp.test])
        assert P.shape == (len(sp.test), 4) and np.allclose(P.sum(1), 1, atol=1e-6), name
        assert set(m.predict(task.X.iloc[sp.test])) <= set(LABEL4), name


def test_unknown_strategy_raises(data):
    with pytest.raises(ValueError, match="unknown strategy 'magic'"): strategy_names('rf,magic')
    with pytest.raises(ValueError, match="unknown model 'magic'"): make_model('magic')
    task, source = data
    with pytest.raises(ValueError, match='needs the mouse cells'):
        make_model('nn_finetune', device='cpu', pretrain_epochs=1).fit(task.X.iloc[:40], task.y[:40])


def test_human_only_family_reaches_the_model(data, tmp_path):
    "Shuffling features that no mouse cell has (chirp, adaptation ratios) changes the transfer model's predictions."
    task, source = data
    sp = splits(task.y, protocol=Protocol(repeats=1, folds=4, random_state=3, val_frac=0))[0]
    only = [f for fam in get_schema('human') if fam.name in ('chirp', 'adapt_ratio') for f in fam.names]
    assert not source[only].notna().any().any()
    for name in ['nn_finetune', 'rf_mouse']:
        m = _fit(name, task, source, sp.train, cache=tmp_path)
        X = task.X.iloc[sp.test].copy()
        X[only] = X[only].sample(frac=1, random_state=0).to_numpy()
        assert np.abs(m.predict_proba(X) - m.predict_proba(task.X.iloc[sp.test])).max() > 1e-3, name


def test_evaluate_and_transfer_agree(data, tmp_path):
    "The same model on the same fold: `evaluate` and the transfer experiment give the same macro-F1."
    task, source = data
    res = transfer_experiment('logreg,rf', TRANSFER_PROTOCOL.replace(repeats=1, folds=3, random_state=4, sizes='20,all'),
                              Executor(scheduler='sync', progress=False, out=tmp_path / 't'), tiny=True, device='cpu',
                              data=(task, source))
    for name in ['logreg', 'rf']:
        kw = strategy_settings(name, network_settings(tiny=True), tiny=True)
        ev = evaluate({name: model_factory(name, 'human', **kw)}, task.X, task.y,
                      protocol=Protocol(repeats=1, folds=3, random_state=4, sizes='20,all'),
                      executor=Executor(progress=False))
        a = ev.set_index(['size', 'repeat', 'fold']).macro_f1.sort_index()
        b = res[res.model == name].set_index(['size', 'repeat', 'fold']).macro_f1.sort_index()
        assert len(a) == 6 and np.allclose(a.to_numpy(), b.to_numpy(), atol=1e-12)


def test_transfer_takes_over_the_model_comparison_runs(data, tmp_path):
    "At size 'all' a plain model's transfer run is the model comparison's run (inner split or not): taken over, equal."
    from ephys2tx.evaluation import run_experiment
    task, source = data
    first = run_experiment(task, ['logreg'], Protocol(repeats=1, folds=3, random_state=4),
                           Executor(progress=False, out=tmp_path / 'models'))   # val_frac 0.2: logreg fits train + val
    proto = TRANSFER_PROTOCOL.replace(repeats=1, folds=3, random_state=4, sizes='20,all')
    ex, kw = Executor(scheduler='sync', progress=False), dict(tiny=True, device='cpu', data=(task, source))
    taken = transfer_experiment('logreg', proto, ex.replace(out=tmp_path / 't', reuse=[tmp_path / 'models']), **kw)
    fresh = transfer_experiment('logreg', proto, ex.replace(out=tmp_path / 'f'), **kw)
    assert len(taken.attrs['reused']) == 3 and len(taken.attrs['computed']) == 3     # size 20 is fitted
    assert set(taken.attrs['reused']) == set(first.run_id)
    key = ['size', 'repeat', 'fold']
    a, b = taken.set_index(key).sort_index(), fresh.set_index(key).sort_index()
    assert np.allclose(a.macro_f1, b.macro_f1, atol=1e-12) and np.allclose(a.log_loss, b.log_loss, atol=1e-9)


def test_resume_and_dask_match_sync(data, tmp_path):
    task, source = data
    proto = TRANSFER_PROTOCOL.replace(sizes='20', repeats=1, folds=2, random_state=0)
    kw = dict(tiny=True, device='cpu', data=(task, source))
    sync = Executor(scheduler='sync', progress=False, out=tmp_path / 'a')
    first = transfer_experiment('best_human,nn_human', proto, sync, **kw)
    full = transfer_experiment('best_human,nn_human,nn_finetune,selftrain', proto, sync, **kw)
    assert len(full) == 8 and set(full.attrs['computed']).isdisjoint(first.run_id)
    again = transfer_experiment('best_human,nn_human,nn_finetune,selftrain', proto, sync, **kw)
    assert again.attrs['computed'] == ()
    dask = transfer_experiment('best_human,nn_human,nn_finetune,selftrain', proto,
                               Executor(n_workers=2, progress=False, out=tmp_path / 'b'), **kw)
    cols = ['macro_f1', 'accuracy', 'balanced_accuracy']
    pd.testing.assert_frame_equal(dask.set_index('run_id')[cols].sort_index(), full.set_index('run_id')[cols].sort_index())


def test_gains_headline_and_verdict(data):
    "Gains are paired by split; the headline compares the baseline of record with the transfer strategy of record."
    rng = np.random.default_rng(0)
    rows = []
    for z in ['20', '80', 'all']:
        for r in range(2):
            for f in range(5):
                b = 0.6 + rng.normal(0, 0.03)
                for m, v in [(BASELINE, b), ('nn_finetune', b + 0.06 + rng.normal(0, 0.004)), ('rf_mouse', b)]:
                    rows.append(dict(model=m, size=z, repeat=r, fold=f, n_train=20, n_pool=540, n_test=135, macro_f1=v))
    res = pd.DataFrame(rows)
    g = gains_of(res).set_index(['model', 'size'])
    assert g.loc[('nn_finetune', '20'), 'verdict'] == 'helps' and g.loc[('rf_mouse', '20'), 'verdict'] != 'helps'
    hl = headline(res)   # the strategy of record was not run: the best mouse-using one stands in
    assert list(hl['transfer']) == ['nn_finetune'] * 3 and (hl.gain > 0.05).all() and (hl.p < 0.05).all()
    assert 'reached by nn_finetune' in verdict_text(res)
    rec = res[res.model == 'rf_mouse'].assign(model=RECORD_STRATEGY, macro_f1=lambda x: x.macro_f1 - 0.05)
    hl = headline(pd.concat([res, rec]))
    assert list(hl['transfer']) == [RECORD_STRATEGY] * 3 and (hl.gain < -0.04).all()
    assert all(b.startswith('nn_finetune +0.06') for b in hl['best transfer (post hoc)'])
    assert f'the transfer strategy of record {RECORD_STRATEGY}' in verdict_text(pd.concat([res, rec]))


def test_cli_transfer_writes_tables_and_bundle(mirror, tmp_path):
    from ephys2tx.cli import main
    from ephys2tx.bundles import load_bundle
    out = tmp_path / 'exp'
    rc = main(['--data-dir', str(mirror), 'transfer', '--strategy', 'rf,nn_finetune', '--human-sizes', '20,all',
               '--repeats', '1', '--folds', '2', '--tiny', '--scheduler', 'sync', '--out', str(out), '--no-progress',
               '--device', 'cpu', '--save-model', str(tmp_path / 'bundle')])
    assert rc == 0
    res = pd.read_csv(out / 'results.csv')
    assert len(res) == 3 * 2 * 2 and set(res.model) == {BASELINE, 'rf', 'nn_finetune'}     # the baseline is added
    for f in ['curve.csv', 'gains.csv', 'gains_same_arch.csv', 'headline.csv', 'curve.png', 'report.md']:
        assert (out / f).is_file() or f == 'gains_same_arch.csv', f
    g = pd.read_csv(out / 'gains.csv')
    assert set(g.model) == {'rf', 'nn_finetune'} and set(g['size'].astype(str)) == {'20', 'all'}
    m = load_bundle(tmp_path / 'bundle')
    meta = json.loads((tmp_path / 'bundle' / 'bundle.json').read_text())
    assert meta['transfer']['strategy'] == 'NetFinetune' and meta['classes'] == LABEL4
    human = load_task('human', data_dir=mirror).X
    assert m.predict_proba(human.iloc[:5]).shape == (5, 4)


def test_cli_evaluate_runs_a_strategy_with_the_mouse_cells(mirror, tmp_path, capsys):
    "`ephys2tx evaluate --species human --sizes ...` hands the mouse cells to a strategy that takes them."
    from ephys2tx.cli import main
    rc = main(['--data-dir', str(mirror), 'evaluate', '--species', 'human', '--model', 'nn_zeroshot', '--model', 'logreg',
               '--sizes', '20', '--repeats', '1', '--folds', '2', '--set', 'nn_zeroshot.pretrain_epochs=1',
               '--set', 'nn_zeroshot.device=cpu', '--out', str(tmp_path), '--no-progress'])
    assert rc == 0
    r = pd.read_parquet(tmp_path / 'evaluate_human_stratified.parquet')
    assert set(r[r.uses_source].model) == {'nn_zeroshot'} and set(r['size']) == {'20'} and len(r) == 4
    capsys.readouterr()
    assert main(['--data-dir', str(mirror), 'evaluate', '--species', 'mouse', '--model', 'nn_zeroshot', '--repeats', '1',
                 '--folds', '2', '--out', str(tmp_path / 'm'), '--no-progress']) == 2
    assert 'use --species human' in capsys.readouterr().err


def test_rf_mouse_bundle_round_trip_and_missing_features(data, tmp_path):
    """rf_mouse (a forest reading a mouse network's outputs) as a bundle: the same probabilities after the round trip;
    with features missing, the choice of a forest needs the mouse cells: skipped and said without them, made with them."""
    import io
    from contextlib import redirect_stderr, redirect_stdout
    from ephys2tx.bundles import load_bundle, predict_cells, save_bundle, subset_model
    from ephys2tx.cli import main
    task, source = data
    m = _fit('rf_mouse', task, source, np.arange(len(task.y)))
    P = m.predict_proba(task.X)
    back = load_bundle(save_bundle(m, tmp_path / 'b', reference=task.X))
    np.testing.assert_array_equal(back.predict_proba(task.X), P)
    import pickle       # joblib workers pickle it: the network travels as CPU tensors and its family widths
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(m)).predict_proba(task.X), P)
    meta = back.bundle_
    assert meta['model_name'] == 'rf_mouse' and meta['classes'] == LABEL4 and meta['schema'] == 'human'
    assert [(n['owner'], n['attribute']) for n in meta['stored']['networks']] == [('ephys2tx.transfer.NetZeroShot',
                                                                                    'net_')]
    assert next(back.zeroshot_.net_.parameters()).device.type == 'cpu' and back.zeroshot_.device == 'cpu'
    keep = [f.name for fam in get_schema('human') if fam.name in ('subthreshold', 'fi') for f in fam.features]
    few = task.X[['specimen_id'] + keep].iloc[:20]
    out, masked = predict_cells(back, few, allow_missing=True)
    assert 'subset_model' not in out.attrs and 'needs the mouse cells' in out.attrs['subset_note']
    assert (out.predicted_by == 'rf_mouse').all() and (out.status == 'ok').all()
    few.to_csv(tmp_path / 'few.csv', index=False)
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        rc = main(['predict', '--model', str(tmp_path / 'b'), '--input', str(tmp_path / 'few.csv'),
                   '--out', str(tmp_path / 'p.csv'), '--allow-missing'])
    assert rc == 0 and 'rf_mouse needs the mouse cells' in err.getvalue(), err.getvalue()
    ch = subset_model(back, masked, source=source, refit=False)
    assert (ch['how'], ch['folds'], ch['model']) == ('cross-validation', 3, 'rf_mouse')
    assert 0 <= ch['rf_mouse'] <= 1 and 0 <= ch['forest'] <= 1 and ch['use'] in ('rf_mouse', 'forest')
