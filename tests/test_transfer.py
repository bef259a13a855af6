"Cross-species transfer: subsampling, determinism, resuming, CLI and bundle (real data, tiny settings)."
import json, shutil
from pathlib import Path
import numpy as np, pandas as pd
import pytest, torch

from ephys2tx.data import LABEL4
from ephys2tx.transfer import (TINY, STRATEGIES, TransferConfig, TransferClassifier, gain_table,
                               outer_folds, plan_runs, pretrain, read_parts, run_experiment, subsample, transfer_data)

torch.set_num_threads(1)
METRICS = ['macro_f1', 'accuracy', 'balanced_accuracy'] + [f'f1_{c}' for c in LABEL4]


@pytest.fixture(scope='module')
def data(mirror):
    return transfer_data(data_dir=mirror)


@pytest.fixture(scope='module')
def cfg():
    return TransferConfig(**{**TINY, 'pretrain_epochs': 1})


def test_subsample_stratified_nested_seeded():
    y = np.array(['a'] * 50 + ['b'] * 30 + ['c'] * 5 + ['d'] * 3)
    for size in [8, 10, 17, 40, 88]:
        s = subsample(y, size, seed=1)
        assert len(s) == size == len(set(s))
        assert pd.Series(y[s]).value_counts().min() >= 2 and set(y[s]) == set(y)
    assert set(subsample(y, 10, 5)) <= set(subsample(y, 20, 5)) <= set(subsample(y, 40, 5))
    assert not np.array_equal(subsample(y, 20, 5), subsample(y, 20, 6))
    with pytest.raises(ValueError, match='below 2 cells'): subsample(y, 7, 0)
    with pytest.raises(ValueError, match='exceeds'): subsample(y, 89, 0)
    with pytest.raises(ValueError, match='fewer than 2'): subsample(np.array(['a'] * 9 + ['b']), 6, 0)


def test_outer_folds_same_for_every_size_and_strategy(data):
    mouse, human = data
    a = outer_folds(human.label4, human.donor, 2, 3, seed=4)
    b = outer_folds(human.label4, human.donor, 2, 3, seed=4)
    assert all(np.array_equal(x[3], y[3]) for x, y in zip(a, b))
    for r, f, tr, te in outer_folds(human.label4, human.donor, 1, 3, seed=4, grouped=True):
        assert not set(human.donor.iloc[tr]) & set(human.donor.iloc[te])
    ids = [s.run_id for s in plan_runs(['nn_human', 'nn_finetune'], '10,all', 2, 3, 0, False)]
    assert len(ids) == len(set(ids)) == 2 * 2 * 2 * 3


def test_gain_table_pairs_splits_and_uses_corrected_test():
    rng = np.random.default_rng(1)
    rows = []
    for r in range(3):
        for f in range(4):
            b = 0.6 + rng.normal(0, 0.05)
            for s, v in [('nn_human', b), ('nn_dann', b - 0.04 + rng.normal(0, 0.005)), ('pooled_rf', b + rng.normal(0, 0.05))]:
                rows.append(dict(strategy=s, size='all', repeat=r, fold=f, n_train=500, n_pool=500, n_test=125, macro_f1=v))
    res = pd.DataFrame(rows)
    g = gain_table(res.iloc[1:]).set_index('strategy')        # a missing baseline row: only shared splits are paired
    assert g.loc['nn_dann', 'verdict'] == 'hurts' and g.loc['nn_dann', 'n_splits'] == 11
    w = res.pivot_table(index=['repeat', 'fold'], columns='strategy', values='macro_f1').iloc[1:]
    d = (w['nn_dann'] - w['nn_human']).to_numpy()
    t = d.mean() / np.sqrt(d.var(ddof=1) * (1 / 11 + 125 / 500))
    assert g.loc['nn_dann', 't'] == pytest.approx(t) and g.loc['nn_dann', 'gain'] == pytest.approx(d.mean())


def test_pretraining_cached_and_mouse_only(data, cfg, tmp_path):
    mouse, human = data
    a = pretrain(mouse, cfg, seed=0, cache_dir=tmp_path)
    assert len(list(tmp_path.glob('pretrain_*.pkl'))) == 1 and a.n_mouse == len(mouse)
    b = pretrain(mouse, cfg, seed=0, cache_dir=tmp_path)              # loaded, not retrained
    assert b.key == a.key and all(torch.equal(a.state[k], b.state[k]) for k in a.state)
    c = pretrain(mouse, cfg, seed=1, cache_dir=tmp_path)
    assert c.key != a.key and len(list(tmp_path.glob('pretrain_*.pkl'))) == 2
    assert set(a.transform.groups_) == {'all'} and (mouse.species == 'mouse').all()


def test_same_seed_same_table_dask_and_sync(data, cfg, tmp_path):
    kw = dict(strategies=['pooled_logreg', 'nn_human', 'nn_finetune', 'nn_dann'], sizes='20',
              repeats=1, folds=2, seed=3, config=cfg, data=data, progress=False)
    r1 = run_experiment(out=tmp_path / 'a', n_workers=2, **kw)           # Dask LocalCluster, 2 processes
    r2 = run_experiment(out=tmp_path / 'b', scheduler='sync', **kw)      # in-process
    assert len(r1) == 4 * 1 * 2 and list(r1.run_id) == list(r2.run_id)
    pd.testing.assert_frame_equal(r1[['run_id'] + METRICS], r2[['run_id'] + METRICS])
    saved = pd.read_csv(tmp_path / 'a' / 'results.csv')
    assert list(saved.run_id) == list(r1.run_id)
    assert np.allclose(saved.macro_f1, r1.macro_f1)


def test_resume_computes_only_missing_runs(data, cfg, tmp_path):
    kw = dict(strategies=['human_logreg', 'nn_human', 'nn_zeroshot'], sizes='10,40', repeats=1, folds=2, seed=0,
              config=cfg, data=data, progress=False, out=tmp_path, scheduler='sync')
    first = run_experiment(stop_after=5, **kw)
    assert len(first) == 5 and first.attrs['missing'] == 12 - 5
    # lose two finished runs as well (deleted part files)
    parts = sorted((tmp_path / 'parts').glob('*.json'))
    lost = [json.loads(p.read_text())['run_id'] for p in parts[:2]]
    for p in parts[:2]: p.unlink()
    second = run_experiment(**kw)
    assert len(second) == 12 and second.attrs['missing'] == 0
    expected = (set(second.run_id) - set(first.run_id)) | set(lost)
    assert set(second.attrs['computed']) == expected and len(second.attrs['computed']) == 12 - 5 + 2
    third = run_experiment(**kw)
    assert third.attrs['computed'] == []
    pd.testing.assert_frame_equal(second.drop(columns='fit_seconds'), third.drop(columns='fit_seconds'))


def test_strategies_need_what_they_say(data, cfg):
    mouse, human = data
    X, y = human.iloc[:120], human.label4.iloc[:120].to_numpy()
    with pytest.raises(ValueError, match='needs the mouse table'): TransferClassifier('pooled_rf').fit(X, y)
    with pytest.raises(ValueError, match='unknown strategy'): TransferClassifier('magic').fit(X, y)
    with pytest.raises(ValueError, match='outside'): TransferClassifier('human_logreg').fit(X, np.where(y == 'Vip', 'Sncg', y))
    P = TransferClassifier('coral_logreg', mouse=mouse, config=cfg).fit(X, y).predict_proba(human.iloc[120:160])
    assert P.shape == (40, 4) and np.allclose(P.sum(1), 1)


def main(argv):
    "The `ephys2tx` parser with the transfer and predict commands only (independent of other modules' state)."
    import argparse
    from ephys2tx import bilstm, transfer
    p = argparse.ArgumentParser(prog='ephys2tx'); p.add_argument('--data-dir', default=None)
    sub = p.add_subparsers(dest='command', required=True)
    transfer.register_cli(sub); bilstm.register_cli(sub)
    args = p.parse_args(argv)
    return args.func(args)


def test_cli_writes_table_figure_and_a_predictable_bundle(data, mirror, tmp_path, capsys):
    out, bundle = tmp_path / 'exp', tmp_path / 'model'
    rc = main(['--data-dir', str(mirror), 'transfer', '--strategy', 'human_rf,nn_finetune', '--human-sizes', '20,all',
               '--repeats', '1', '--folds', '2', '--tiny', '--scheduler', 'sync', '--no-progress', '--out', str(out),
               '--save-model', str(bundle)])
    assert rc == 0
    res = pd.read_csv(out / 'results.csv')
    assert len(res) == 3 * 2 * 2 and set(res.strategy) == {'nn_human', 'human_rf', 'nn_finetune'}   # baseline added
    assert (out / 'curve.png').stat().st_size > 10_000 and 'target 1' in (out / 'report.md').read_text()
    g = pd.read_csv(out / 'gains.csv')
    assert set(g.strategy) == {'human_rf', 'nn_finetune'} and set(g['size'].astype(str)) == {'20', 'all'}
    # the bundle predicts raw human cells through `ephys2tx predict`
    src = Path(mirror) / 'human_leedalley2023' / 'LeeDalley_ephys_fx.csv'
    cells = pd.read_csv(src).iloc[:30]
    _, human = data
    cells = cells[cells.specimen_id.isin(human.specimen_id)]
    cells.to_csv(tmp_path / 'cells.csv', index=False)
    assert main(['predict', '--model', str(bundle), '--input', str(tmp_path / 'cells.csv'), '--out', str(tmp_path / 'p.csv')]) == 0
    pred = pd.read_csv(tmp_path / 'p.csv')
    assert len(pred) == len(cells) and set(pred.predicted_subclass) <= set(LABEL4)
    assert np.allclose(pred[[f'prob_{c}' for c in LABEL4]].sum(1), 1, atol=1e-5)
    meta = json.loads((bundle / 'bundle.json').read_text())
    assert meta['transfer']['strategy'] == 'nn_finetune' and meta['classes'] == LABEL4
