"Per-family sparse PCA, embeddings, separation measures and the rf_spca baseline."
import warnings
import numpy as np, pandas as pd
import pytest
from ephys2tx.data import load_cells
from ephys2tx.evaluation import Executor, Protocol, evaluate, make_model, splits
from ephys2tx.features import Family, Feature
from ephys2tx.gouwens import FamilySparsePCA, explained_gains, embed, gmm_clusters, purity, subsample

warnings.filterwarnings('ignore', message='.*outside.*')


@pytest.fixture(scope='module')
def human(mirror):
    return load_cells('human', data_dir=mirror, progress=False)


def _toy(n=300, seed=0):
    "Two families: 'a' = three noisy copies of one signal (one component), 'b' = two independent features."
    rng = np.random.RandomState(seed)
    s = rng.randn(n)
    df = pd.DataFrame({'specimen_id': np.arange(n), 'species': 'human',
                       'a1': s + .05 * rng.randn(n), 'a2': s + .05 * rng.randn(n), 'a3': -s + .05 * rng.randn(n),
                       'b1': rng.randn(n), 'b2': rng.randn(n)})
    fams = [Family('a', tuple(Feature(c, '1', c) for c in ['a1', 'a2', 'a3'])),
            Family('b', tuple(Feature(c, '1', c) for c in ['b1', 'b2']))]
    return df, fams


def test_components_kept_by_explained_variance():
    df, fams = _toy()
    m = FamilySparsePCA(fams, alpha=0.1, min_var=0.1, random_state=0).fit(df)
    t = m.components_table().set_index('family')
    assert t.loc['a', 'kept'] == 1 and t.loc['a', 'explained'] > 0.95   # one signal behind three copies
    assert t.loc['b', 'kept'] == 2                                       # two independent features
    Z = m.transform(df)
    assert Z.shape == (len(df), 3) and Z.dtype == np.float32
    assert abs(np.corrcoef(Z[:, 0], df['a1'])[0, 1]) > 0.99
    # scores of a row do not depend on the other rows of the batch
    np.testing.assert_allclose(m.transform(df.iloc[[5, 7]]), Z[[5, 7]], atol=1e-5)
    assert list(m.get_feature_names_out()) == ['a_spc0', 'b_spc0', 'b_spc1']


def test_explained_gains_match_pca():
    from sklearn.decomposition import PCA
    rng = np.random.RandomState(0)
    A = rng.randn(400, 4) @ rng.randn(4, 4)
    p = PCA().fit(A)
    order, gains = explained_gains(A, p.transform(A)[:, ::-1])   # scrambled order is recovered
    assert list(order) == [3, 2, 1, 0]
    np.testing.assert_allclose(gains, p.explained_variance_ratio_, atol=1e-8)
    # a duplicated score adds nothing
    Z = p.transform(A)[:, :1]
    assert explained_gains(A, np.c_[Z, Z])[1][1] == pytest.approx(0, abs=1e-8)


def test_spca_fitted_inside_folds(human, monkeypatch):
    seen = []
    orig = FamilySparsePCA.fit
    def recording_fit(self, X, y=None):
        seen.append(set(X['specimen_id'])); return orig(self, X, y)
    monkeypatch.setattr(FamilySparsePCA, 'fit', recording_fit)
    y, ids = human['subclass'].to_numpy(), human['specimen_id'].to_numpy()
    sp = splits(y, human['donor'], Protocol(repeats=1, folds=3, grouped=True))
    res = evaluate({'rf_spca': make_model('rf_spca', 'human', n_estimators=30)}, human, y, split_list=sp,
                   executor=Executor(progress=False))
    assert len(seen) == len(sp)
    for s, fitted in zip(sp, seen): assert fitted == set(ids[s.fit_rows]) and not fitted & set(ids[s.test])
    assert res.balanced_accuracy.mean() > 0.4   # well above chance (0.25)


def test_gmm_bic_finds_blobs_and_purity():
    rng = np.random.RandomState(0)
    centers = np.array([[0, 0], [8, 0], [0, 8]])
    y = np.repeat(['p', 'q', 'r'], 100)
    Z = centers[np.repeat(np.arange(3), 100)] + rng.randn(300, 2)
    cl, k, bic = gmm_clusters(Z, range(1, 7))
    assert k == 3 and bic.idxmin() == 3 and purity(cl, y) > 0.98
    assert purity(np.zeros(300, int), y) == pytest.approx(1 / 3)


def test_embed_and_subsample():
    rng = np.random.RandomState(0)
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1): E = embed(rng.randn(60, 4), 'tsne')
    assert E.shape == (60, 2) and np.isfinite(E).all()
    with pytest.raises(ValueError, match='unknown embedding method'): embed(rng.randn(10, 2), 'pca')
    y = np.repeat(['a', 'b'], [90, 10])
    idx = subsample(y, 50)
    assert len(idx) == 50 and (y[idx] == 'b').sum() == 5 and len(subsample(y, None)) == 100
