"""The experiment settings as objects: a `Protocol` decides the numbers, an `Executor` does not; both reach every
experiment by name, the commands read their options from them, and the stores of runs are keyed by them."""
import numpy as np, pandas as pd
import pytest

from ephys2tx.evaluation import (BOTH_PROTOCOLS, Executor, Protocol, evaluate, model_code, module_closure, runs_dir,
                                 splits)


def test_a_protocol_is_checked_and_frozen():
    with pytest.raises(ValueError, match='folds must be >= 2'): Protocol(folds=1)
    with pytest.raises(ValueError, match='val_frac'): Protocol(val_frac=1.0)
    with pytest.raises(ValueError, match="size '0'"): Protocol(sizes='0,10')
    p = Protocol(sizes='all,10')
    assert p.sizes == ('10', 'all') and p.replace(grouped=True).name == 'grouped'
    with pytest.raises(AttributeError): p.folds = 3
    assert [q.name for q in BOTH_PROTOCOLS] == ['stratified', 'grouped']


def test_the_executor_changes_no_number():
    "The same protocol run in this process and on two worker processes gives the same table."
    from sklearn.linear_model import LogisticRegression
    rng = np.random.RandomState(0)
    y = np.repeat(['a', 'b', 'c'], 30)
    X = pd.DataFrame(rng.randn(90, 3) + (y == 'a')[:, None], columns=list('xyz'))
    p = Protocol(repeats=2, folds=3, val_frac=0)
    here = evaluate({'lr': LogisticRegression(max_iter=500)}, X, y, protocol=p, executor=Executor(progress=False))
    two = evaluate({'lr': LogisticRegression(max_iter=500)}, X, y, protocol=p,
                   executor=Executor(n_workers=2, progress=False))
    assert here.run_id.tolist() == two.run_id.tolist()
    assert np.allclose(here.macro_f1, two.macro_f1)
    other = evaluate({'lr': LogisticRegression(max_iter=500)}, X, y, protocol=p.replace(random_state=1),
                     executor=Executor(progress=False))
    assert not np.array_equal(here.macro_f1, other.macro_f1)      # the protocol's seed does change the numbers


def test_more_repeats_keep_the_folds_and_the_store():
    y = np.repeat(['a', 'b'], 20)
    one, three = splits(y, protocol=Protocol(repeats=1, folds=4)), splits(y, protocol=Protocol(repeats=3, folds=4))
    assert all(np.array_equal(a.test, b.test) for a, b in zip(one, three))
    assert runs_dir('x', 'human', Protocol(repeats=1)) == runs_dir('x', 'human', Protocol(repeats=5))
    assert runs_dir('x', 'human', Protocol(folds=3)) != runs_dir('x', 'human', Protocol(folds=5))


def test_the_store_key_follows_the_code_of_every_registered_model():
    code = model_code()
    assert {'ephys2tx.evaluation', 'ephys2tx.transfer', 'ephys2tx.bilstm', 'ephys2tx.record'} <= set(code)
    assert 'ephys2tx.training' in module_closure(['ephys2tx.bilstm'])      # what a model's module imports, too
    assert 'ephys2tx.docs' not in code                                      # and nothing else


def test_the_commands_offer_the_fields_as_options(capsys):
    from ephys2tx.cli import build_parser
    for cmd in ['evaluate', 'transfer', 'reproduce']:
        p = build_parser(cmd)
        sub = next(a for a in p._actions if a.dest == 'command').choices[cmd]
        opts = set(sub._option_string_actions)
        assert {'--seed', '--n-workers', '--folds', '--repeats'} <= opts, cmd
        assert '--n-jobs' not in opts, cmd
    args = build_parser('transfer').parse_args(['transfer', '--seed', '4', '--human-sizes', '20,all'])
    assert (args.random_state, args.sizes, args.repeats, args.n_workers) == (4, '20,all', 5, 2)


def _results(models_means: dict, sizes=('20', 'all'), folds=5) -> pd.DataFrame:
    "A results table of the transfer experiment's shape, with the given mean macro-F1 per model (and some noise)."
    rng = np.random.RandomState(0)
    rows = [dict(model=m, protocol='stratified', size=z, repeat=0, fold=f, n_train=100, n_pool=100, n_test=25,
                 macro_f1=mu + rng.normal(0, .01)) for m, mu in models_means.items() for z in sizes for f in range(folds)]
    return pd.DataFrame(rows)


def test_the_baseline_option_reaches_the_verdict_and_the_headline(tmp_path):
    from ephys2tx.transfer import headline, verdict_text, write_tables
    res = _results(dict(best_human=0.70, rf=0.50, logreg=0.55, zs_mix=0.60, blend_mix=0.72))
    v = verdict_text(res, baseline='rf')
    assert '(vs rf)' in v and 'best_human' not in v
    h = headline(res, baseline='rf')
    assert 'human-only (rf)' in h.columns and (h['gain'] > 0.15).all()       # blend_mix against the weak rf
    assert (headline(res)['gain'] < 0.1).all()                               # against the baseline of record
    write_tables(res, tmp_path, baseline='rf')
    assert 'human-only (rf)' in pd.read_csv(tmp_path / 'headline.csv').columns
    assert set(pd.read_csv(tmp_path / 'gains.csv').versus) == {'rf'}
    assert '(vs rf)' in (tmp_path / 'report.md').read_text()


def test_every_strategy_states_its_facts_on_its_class():
    "The facts the experiment reads agree with what each strategy's `fit` takes: one place, no guessing by name."
    from ephys2tx.evaluation import fit_accepts, make_model
    from ephys2tx.transfer import STRATEGIES, network_settings, strategy_settings
    net = network_settings(device='cpu', tiny=True)
    for name, st in STRATEGIES.items():
        m = make_model(name)
        assert fit_accepts(m, 'unlabelled') == (st['setting'] == 'labelled + unlabelled'), name
        assert fit_accepts(m, 'source') == st['uses_mouse'], name
        params = strategy_settings(name, net, tiny=True)
        assert make_model(name, **params) is not None
        if st['needs_pretraining']: assert 'net' in params or 'pretrain_random_state' in params, name
