"The evaluation protocol: splits, metrics, leak-freedom, paired comparison, registry and CLI, on real and small data."
import io, json, warnings
from contextlib import redirect_stdout
import numpy as np, pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from ephys2tx.data import DataError, load_cells
from ephys2tx.evaluation import (Executor, LookupClassifier, Protocol, RecordingTransformer, Split, compare, evaluate,
                                 make_model, MODELS, register_model, score, splits, summarize, load_task)
from ephys2tx.features import FlatFeatures

warnings.filterwarnings('ignore', message='.*outside.*')


@pytest.fixture(scope='module')
def human(mirror):
    return load_cells('human', data_dir=mirror, progress=False)


def test_grouped_splits_keep_donors_apart_on_real_data(human):
    y, g = human['subclass'].to_numpy(), human['donor'].to_numpy()
    sp = splits(y, g, Protocol(repeats=2, folds=5, grouped=True, random_state=7))
    assert len(sp) == 10
    for s in sp:
        assert not set(g[s.fit_rows]) & set(g[s.test]), 'a donor on both sides of an outer split'
        assert not set(g[s.train]) & set(g[s.val]), 'a donor on both sides of the inner split'
        assert len(s.train) + len(s.val) + len(s.test) == len(y)
    for r in range(2):
        assert sorted(np.concatenate([s.test for s in sp if s.repeat == r])) == list(range(len(y)))
    # the stratified variant does mix donors (which is what the grouped one is for)
    st = splits(y, g, Protocol(repeats=1, folds=5))
    assert any(set(g[s.fit_rows]) & set(g[s.test]) for s in st)


def test_grouped_needs_donors():
    y = np.array(['a', 'b'] * 10)
    with pytest.raises(ValueError, match='needs `groups`'): splits(y, protocol=Protocol(grouped=True))
    with pytest.raises(ValueError, match='fewer than folds'): splits(y, ['d1', 'd2'] * 10, Protocol(folds=5, grouped=True))
    with pytest.raises(DataError, match="donor"): splits(y, [None] * 20, Protocol(folds=2, grouped=True))


def test_memorizer_scores_chance_on_shuffled_labels(human):
    y = np.random.RandomState(1).permutation(human['subclass'].to_numpy())
    res = evaluate({'lookup': LookupClassifier()}, human, y, protocol=Protocol(repeats=2, folds=5),
                   executor=Executor(progress=False))
    assert abs(res.balanced_accuracy.mean() - 0.25) < 0.06
    # the same model with the test cells in its table (a leak) is perfect: the check has power
    s = splits(y, protocol=Protocol(repeats=1, folds=5))[0]
    assert score(y[s.test], LookupClassifier().fit(human, y).predict(human.iloc[s.test]))['accuracy'] == 1.0


class ValidatingClassifier(ClassifierMixin, BaseEstimator):
    "Records the ids of its training and validation rows; predicts the majority class."
    LOG = []
    def fit(self, X, y, validation=None):
        ValidatingClassifier.LOG.append((set(X['specimen_id']), set(validation[0]['specimen_id'])))
        self.classes_, c = np.unique(y, return_counts=True); self.p_ = c / c.sum(); return self
    def predict_proba(self, X): return np.tile(self.p_, (len(X), 1))
    def predict(self, X): return self.classes_[self.predict_proba(X).argmax(1)]


def test_transforms_and_validation_see_only_training_rows(human):
    y, ids = human['subclass'].to_numpy(), human['specimen_id'].to_numpy()
    sp = splits(y, human['donor'], Protocol(repeats=1, folds=3, grouped=True, random_state=3))
    RecordingTransformer.LOG.clear(); ValidatingClassifier.LOG.clear()
    models = {'std': make_pipeline(RecordingTransformer('std'), FlatFeatures('human'), LogisticRegression(max_iter=200)),
              'val': ValidatingClassifier()}
    res = evaluate(models, human, y, split_list=sp, executor=Executor(progress=False))
    assert len(res) == 6
    for s, fitted, (tr, va) in zip(sp, RecordingTransformer.LOG['std'], ValidatingClassifier.LOG):
        test = set(ids[s.test])
        assert fitted == set(ids[s.fit_rows]) and not fitted & test
        assert tr == set(ids[s.train]) and va == set(ids[s.val]) and not (tr | va) & test and not tr & va
    v = res[res.model == 'val']
    assert (v.n_fit == v.n_train - v.n_val).all() and (v.n_val > 0).all()


def test_class_absent_from_training_and_test_fold():
    # a class present only in the test rows: the model never saw it, probabilities get a zero column
    rng = np.random.RandomState(0)
    X = pd.DataFrame({'x': rng.randn(30)}); y = np.array(['a'] * 14 + ['b'] * 14 + ['c'] * 2)
    sp = [Split(0, 0, np.arange(0, 28, 2), np.arange(0, 0), np.r_[np.arange(1, 28, 2), 28, 29])]
    res = evaluate({'lr': LogisticRegression()}, X, y, split_list=sp, executor=Executor(progress=False))
    r = res.iloc[0]
    assert r.recall_c == 0 and np.isnan(r.precision_c) and r.support_c == 2 and np.isfinite(r.log_loss)
    cm = json.loads(r.confusion); assert cm['labels'] == ['a', 'b', 'c'] and np.sum(cm['matrix']) == 16


def test_compare_identical_and_shifted():
    """What the notebook's example of `compare` leaves out: identical results (difference 0, p = 1), the correction
    term 1/k + n_test/n_train, a clear shift with a tiny p, and a model without results."""
    base = pd.DataFrame([dict(repeat=r, fold=f, n_train=80, n_test=20) for r in range(3) for f in range(5)])
    rng = np.random.RandomState(0)
    a = base.assign(model='a', macro_f1=0.7 + rng.normal(0, .03, 15))
    same = compare(pd.concat([a, a.assign(model='b')]), 'a', 'b')
    assert same['mean_diff'] == 0 and same['t'] == 0 and same['p'] == pytest.approx(1.0)
    b = a.assign(model='b', macro_f1=a.macro_f1 + 0.05 + rng.normal(0, .005, 15))
    c = compare(pd.concat([a, b]), 'b', 'a')
    assert c['p'] < 0.001 and c['correction'] == pytest.approx(1 / 15 + .25)
    with pytest.raises(ValueError, match='no results'): compare(a, 'a', 'zzz')


def test_parallel_equals_sequential():
    rng = np.random.RandomState(0)
    X = pd.DataFrame(rng.randn(90, 3), columns=list('xyz')); y = np.repeat(['a', 'b', 'c'], 30)
    X['x'] += (y == 'a') * 2
    p, one = Protocol(repeats=1, folds=3), Executor(progress=False)
    seq = evaluate({'lr': LogisticRegression()}, X, y, protocol=p, executor=one)
    par = evaluate({'lr': LogisticRegression()}, X, y, protocol=p, executor=one.replace(n_workers=2))
    pd.testing.assert_series_equal(seq.macro_f1, par.macro_f1)


def test_summarize_mean_sd():
    r = pd.DataFrame(dict(model=['m'] * 3, macro_f1=[.5, .6, .7]))
    s = summarize(r, metrics='macro_f1')
    assert s['mean'].iloc[0] == pytest.approx(.6) and s['sd'].iloc[0] == pytest.approx(.1)
    assert s['mean ± sd'].iloc[0] == '0.600 ± 0.100' and s['n'].iloc[0] == 3


def test_registry_hook():
    def factory(schema='human', random_state=0, C=1.0):
        "A test model"
        return make_pipeline(FlatFeatures(schema), LogisticRegression(C=C, random_state=random_state))
    register_model('test_lr', factory)
    try:
        m = make_model('test_lr', 'mouse', random_state=4, C=0.5)
        assert m[-1].C == 0.5 and m[-1].random_state == 4 and m[0].schema == 'mouse'
    finally: MODELS.pop('test_lr')
    with pytest.raises(ValueError, match='unknown model'): make_model('test_lr')
    for name in ['rf', 'logreg', 'hgb', 'rf_spca']: assert hasattr(make_model(name, 'human'), 'fit')


def test_baselines_beat_chance_on_real_data(human):
    t = load_task('human', data_dir=None)
    res = evaluate({n: make_model(n, 'human', n_estimators=50) if n == 'rf' else make_model(n, 'human')
                    for n in ['rf', 'logreg']}, t.X, t.y,
                   protocol=Protocol(repeats=1, folds=3), executor=Executor(progress=False))
    assert (res.groupby('model').balanced_accuracy.mean() > 0.45).all()


def test_cli_evaluate_writes_tables(tmp_path, mirror, capsys):
    from ephys2tx.cli import main
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(['--data-dir', str(mirror), 'evaluate', '--model', 'logreg', '--model', 'rf', '--species', 'human',
                   '--protocol', 'both', '--repeats', '1', '--folds', '2', '--set', 'rf.n_estimators=20',
                   '--out', str(tmp_path), '--no-progress', '--compare-to', 'rf'])
    assert rc == 0
    for proto in ['stratified', 'grouped']:
        r = pd.read_parquet(tmp_path / f'evaluate_human_{proto}.parquet')
        assert set(r.model) == {'logreg', 'rf'} and len(r) == 4 and set(r.protocol) == {proto}
        assert (tmp_path / f'evaluate_human_{proto}.csv').is_file()
        # --compare-to: the paired difference is the mean of the per-fold differences of the results table
        c = pd.read_csv(tmp_path / f'evaluate_human_{proto}_compare.csv')
        assert list(c.model) == ['logreg'] and list(c.versus) == ['rf'] and c.n_pairs[0] == 2
        d = r.set_index(['repeat', 'fold', 'model']).macro_f1.unstack()
        assert np.isclose(c.mean_diff[0], (d['logreg'] - d['rf']).mean()) and 0 <= c.p[0] <= 1
    assert '±' in buf.getvalue() and 'grouped protocol' in buf.getvalue() and 'paired comparison with rf' in buf.getvalue()
    # bad input is one line on stderr and exit status 2, not a traceback
    assert main(['--data-dir', str(mirror), 'evaluate', '--model', 'nope', '--species', 'human']) == 2
    assert "ephys2tx: error: unknown model 'nope'" in capsys.readouterr().err
