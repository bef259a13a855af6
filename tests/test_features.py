"Feature families, the aligned space and the family tensors, on the real tables and on small tables built here."
import csv, io, pickle, warnings
from contextlib import redirect_stdout
import numpy as np, pandas as pd
import pytest
from sklearn.base import clone
from ephys2tx.data import DataError, META_COLS, feature_columns, load_cells, load_raw
from ephys2tx.features import (ALIGN_RULES, EXCLUDED, MIX_MATCHED, Family, FamilyTensors, FamilyTransform, Feature,
                               FlatFeatures, SCHEMAS, check_ranges, class_mix, domain_shift, family_of, get_schema,
                               kish_n, mix_weights, plot_domain_shift, shift_summary, to_aligned, weighted_cohen_d,
                               weighted_ks)

MOUSE, HUMAN = 'mouse_gouwens2020', 'human_leedalley2023'


@pytest.fixture(scope='module')
def cells(mirror):
    return {s: load_cells(s, data_dir=mirror, progress=False) for s in ['mouse', 'human']}


def _rows(path):
    with open(path, newline='', encoding='utf-8-sig') as f: return list(csv.DictReader(f))


def test_every_column_in_exactly_one_family_or_excluded(mirror):
    for sp in ['mouse', 'human']:
        cols = feature_columns(load_raw(sp, data_dir=mirror, progress=False))
        placed = [f.name for fam in get_schema(sp) for f in fam.features]
        assert len(placed) == len(set(placed)), f'{sp}: a feature in two families'
        assert not set(placed) & set(EXCLUDED[sp])
        assert sorted(placed + list(EXCLUDED[sp])) == sorted(cols)
        for c in cols: assert family_of(c, sp) in [f.name for f in get_schema(sp)] + ['excluded']
    with pytest.raises(ValueError, match='no family'): family_of('not_a_feature', 'human')
    assert family_of('fi_fit_slope') == 'fi' and family_of('peak_t_ramp', 'mouse') == 'excluded'
    # the aligned schema uses human names and units; gouwens widths are positive
    hunits = {f.name: f.unit for fam in get_schema('human') for f in fam.features}
    for f in (f for fam in get_schema('aligned') for f in fam.features): assert hunits[f.name] == f.unit
    assert len(get_schema('gouwens')) == 12 and all(f.width > 0 for f in get_schema('gouwens'))
    assert [f.width for f in get_schema('gouwens')][:3] == [450, 447, 100]
    with pytest.raises(ValueError, match='unknown feature schema'): get_schema('rat')


@pytest.mark.parametrize('specimen', [601506507, 740872937, 1003321825])
def test_mouse_conversions_on_known_cells(mirror, cells, specimen):
    meta = {int(r['cell_specimen_id']): r['ephys_session_id'] for r in _rows(mirror / MOUSE / '20200711_patchseq_metadata_mouse.csv')}
    raw = [r for r in _rows(mirror / MOUSE / 'efeature.csv') if f"ses-{meta[specimen]}_" in r['ID']]
    assert len(raw) == 1
    r = {k: float(v) if v != '' else np.nan for k, v in raw[0].items() if k != 'ID'}
    a = to_aligned(cells['mouse']).set_index('specimen_id').loc[specimen]
    expected = {
        'v_baseline': r['vrest'], 'input_resistance': r['ri'], 'tau': r['tau'] / 1000, 'sag': r['sag'],
        'rheobase_i': r['threshold_i_long_square'], 'fi_fit_slope': r['f_i_curve_slope'],
        'adapt_hero': r['adaptation'], 'latency_hero': r['latency'], 'mean_isi_hero': r['avg_isi'] / 1000,
        'threshold_v_rheo': r['threshold_v_long_square'],
        'peak_deltav_rheo': r['peak_v_long_square'] - r['threshold_v_long_square'],
        'fast_trough_deltav_rheo': r['fast_trough_v_long_square'] - r['threshold_v_long_square'],
        'trough_deltav_rheo': r['trough_v_long_square'] - r['threshold_v_long_square'],
        'peak_deltav_ramp': r['peak_v_ramp'] - r['threshold_v_ramp'],
        'trough_deltav_ramp': r['trough_v_ramp'] - r['threshold_v_ramp'],
        'peak_deltav_short_square': r['peak_v_short_square'] - r['threshold_v_short_square'],
        'fast_trough_deltav_short_square': r['fast_trough_v_short_square'] - r['threshold_v_short_square'],
        'upstroke_downstroke_ratio_short_square': r['upstroke_downstroke_ratio_short_square'],
    }
    for k, v in expected.items():
        assert np.isclose(a[k], v, rtol=1e-9, equal_nan=True), (k, a[k], v)
    assert a['species'] == 'mouse'
    assert set(a.index) == set(META_COLS[1:]) | {r.name for r in ALIGN_RULES}


@pytest.mark.parametrize('specimen', [571674365, 855932150])
def test_human_alignment_is_identity(mirror, cells, specimen):
    raw = [r for r in _rows(mirror / HUMAN / 'LeeDalley_ephys_fx.csv') if int(float(r['specimen_id'])) == specimen]
    assert len(raw) == 1
    a = to_aligned(cells['human']).set_index('specimen_id').loc[specimen]
    for rule in ALIGN_RULES:
        v = float(raw[0][rule.human]) if raw[0][rule.human] != '' else np.nan
        assert np.isclose(a[rule.name], v, rtol=1e-9, equal_nan=True), rule.name


def test_mixed_table_and_idempotence(cells):
    both = pd.concat([cells['mouse'], cells['human']], ignore_index=True)
    a = to_aligned(both)
    sep = pd.concat([to_aligned(cells['mouse']), to_aligned(cells['human'])], ignore_index=True)
    np.testing.assert_array_equal(a.iloc[:, len(META_COLS):].to_numpy(float), sep.iloc[:, len(META_COLS):].to_numpy(float))
    pd.testing.assert_frame_equal(to_aligned(a), a)
    with pytest.raises(DataError, match="'species'"): to_aligned(cells['human'].drop(columns=['species']))


def test_unit_mixups_and_missing_columns_are_caught(cells):
    with warnings.catch_warnings():
        warnings.simplefilter('error')                   # the real tables pass the range checks without a warning
        check_ranges(cells['mouse'], 'mouse'); check_ranges(cells['human'], 'human')
    h, m = cells['human'].copy(), cells['mouse'].copy()
    bad = h.assign(tau=h['tau'] * 1000)
    with pytest.raises(DataError, match=r'ephys_fx.csv: tau \(species human\): median.*look 1000x too large for s: given in ms\?'):
        check_ranges(bad, 'human', 'LeeDalley_ephys_fx.csv')
    ms = m.assign(tau=m['tau'] / 1000)                   # mouse tau (ms) handed in s
    with pytest.raises(DataError, match=r'look 1000x too small for ms: given in s\?'): check_ranges(ms, 'mouse')
    with pytest.raises(DataError, match=r'tau \(species mouse\)'): to_aligned(ms)
    h['tau'] = h['tau'] * 1000                           # human tau in ms handed as s
    with pytest.raises(DataError, match=r'tau \(species human\)'): FamilyTransform('human').fit(h)
    m['avg_isi'] = m['avg_isi'] / 1000                   # mouse avg_isi already in s
    with pytest.raises(DataError, match=r'avg_isi \(species mouse\)'): to_aligned(m)
    with pytest.raises(DataError, match=r"\['ri'\]"): FamilyTransform('mouse').fit(cells['mouse'].drop(columns=['ri']))
    with pytest.raises(DataError, match=r"\['sag'\]"): to_aligned(cells['human'].drop(columns=['sag']))
    ok = FamilyTransform('human').fit(cells['human'])
    with pytest.raises(DataError, match='fi_fit_slope'): ok.transform(cells['human'].drop(columns=['fi_fit_slope']))
    with pytest.raises(ValueError, match='not fitted'): FamilyTransform('human').transform(cells['human'])


def test_all_missing_training_feature_is_flagged_and_masked(cells):
    h = cells['human'].copy(); h['sag_tau'] = np.nan
    with pytest.warns(UserWarning, match='sag_tau'):
        ft = FamilyTransform('human').fit(h)
    assert ft.all_missing_ == ['sag_tau']
    T = ft.transform(cells['human'])                     # test cells do have sag_tau: still unobserved
    j = ft.flat_feature_names.index('sag_tau')
    assert not T.flat_mask()[:, j].any() and not T.flat()[:, j].any()
    with pytest.raises(DataError, match='sag_tau'): FamilyTransform('human', on_all_missing='raise').fit(h)


@pytest.mark.filterwarnings('ignore:non-positive values')
def test_no_statistic_leaks_from_test_rows(cells):
    h = cells['human']
    rng = np.random.default_rng(1)
    A = np.sort(rng.choice(len(h), 300, replace=False)); B = np.setdiff1d(np.arange(len(h)), A)
    cols = FamilyTransform('human').fit(h).flat_feature_names
    wild = h.copy()
    wild.loc[B, cols] = wild.loc[B, cols].to_numpy() * -1e3 + 7
    wild.loc[B[:50], cols] = np.nan
    f1, f2 = FamilyTransform('human').fit(h.iloc[A]), FamilyTransform('human').fit(wild.iloc[A])
    pd.testing.assert_frame_equal(f1.stats(), f2.stats())
    np.testing.assert_array_equal(f1.transform(h).values[A], f2.transform(wild).values[A])
    np.testing.assert_array_equal(f1.transform(h).values[A], f1.transform(h.iloc[A]).values)
    # fitting on all rows gives other statistics: the test does detect a fit that saw B
    f3 = FamilyTransform('human').fit(h)
    assert not np.allclose(f3.stats()['center'].to_numpy(), f1.stats()['center'].to_numpy(), equal_nan=True)


def _toy(n=40, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({'specimen_id': np.arange(n) + 100, 'species': ['mouse'] * (n // 2) + ['human'] * (n - n // 2),
                       'skewed': rng.lognormal(0, 1.5, n), 'normal': rng.normal(5, 2, n), 'signed': rng.lognormal(0, 1.5, n) - 1,
                       'c': rng.normal(0, 1, n)})
    df.loc[3, 'normal'] = np.nan
    schema = [Family('a', (Feature('skewed', '1', ''), Feature('normal', '1', ''))),
              Family('b', (Feature('signed', '1', ''), Feature('c', '1', ''), )),
              Family('d', (Feature('c', '1', 'again, in a 1-wide family'),))]
    return df, schema


def test_transform_by_hand_on_a_toy_table():
    df, schema = _toy()
    ft = FamilyTransform(schema).fit(df)
    assert ft.log_feature_names_ == ['skewed']        # skewed and positive only; 'signed' has values <= 0
    T = ft.transform(df)
    assert T.values.shape == (40, 3, 2) and T.values.dtype == np.float32
    assert T.families == ['a', 'b', 'd'] and T.widths == [2, 2, 1] and T.features[0] == ['skewed', 'normal']
    lx = np.log(df['skewed'].to_numpy())
    q75, q25 = np.percentile(lx, [75, 25])
    np.testing.assert_allclose(T.values[:, 0, 0], (lx - np.median(lx)) / (q75 - q25), rtol=1e-5)
    x = df['normal'].to_numpy(); xo = x[~np.isnan(x)]
    exp = (x - np.median(xo)) / (np.percentile(xo, 75) - np.percentile(xo, 25))
    np.testing.assert_allclose(T.values[~np.isnan(x), 0, 1], exp[~np.isnan(x)], rtol=1e-5)
    assert T.values[3, 0, 1] == 0 and not T.obs_mask[3, 0, 1] and T.obs_mask[3, 0, 0] and T.fam_mask[3, 0]
    assert not T.obs_mask[:, 2, 1].any() and not T.values[:, 2, 1].any()      # padding
    assert T.flat().shape == (40, 5) and list(T.index) == list(df.specimen_id)
    sub = T[np.array([1, 5])]
    assert isinstance(sub, FamilyTensors) and len(sub) == 2 and list(sub.index) == [101, 105]
    np.testing.assert_array_equal(sub.values, T.values[[1, 5]])
    # a non-positive value of a log feature is set to the training minimum, with a warning
    low = df.copy(); low.loc[0, 'skewed'] = -1.0
    with pytest.warns(UserWarning, match='skewed'): Tl = ft.transform(low)
    assert Tl.values[0, 0, 0] == T.values[np.argmin(df['skewed'].to_numpy()), 0, 0]
    # no log at all when asked
    assert FamilyTransform(schema, log_skewed=False).fit(df).log_feature_names_ == []
    with pytest.raises(DataError, match='DataFrame'): ft.fit(df.to_numpy())


def test_per_species_statistics():
    df, schema = _toy(60)
    df.loc[df.species == 'human', 'c'] += 10          # a shift between species
    ft = FamilyTransform(schema, per_species=True).fit(df)
    T = ft.transform(df)
    assert ft.groups_ == ['human', 'mouse']
    for s in ['mouse', 'human']:
        c = df.loc[df.species == s, 'c'].to_numpy()
        np.testing.assert_allclose(T.values[(df.species == s).to_numpy(), 1, 1],
                                   (c - np.median(c)) / (np.percentile(c, 75) - np.percentile(c, 25)), rtol=1e-5)
    rat = df.copy(); rat['species'] = 'rat'
    with pytest.raises(DataError, match='rat'): ft.transform(rat)
    with pytest.raises(DataError, match='species'): FamilyTransform(schema, per_species=True).fit(df.drop(columns=['species']))


def test_real_tables_to_tensors(cells):
    both = pd.concat([cells['mouse'], cells['human']], ignore_index=True)
    for schema, df, kw in [('mouse', cells['mouse'], {}), ('human', cells['human'], {}), ('aligned', both, dict(per_species=True))]:
        ft = FamilyTransform(schema, **kw).fit(df)
        T = ft.transform(df)
        D = sum(f.width for f in get_schema(schema))
        assert T.values.shape == (len(df), len(get_schema(schema)), max(f.width for f in get_schema(schema)))
        assert T.flat().shape == (len(df), D) and len(ft.flat_feature_names) == D
        assert np.isfinite(T.values).all() and (T.values[~T.obs_mask] == 0).all()
        assert (T.fam_mask == T.obs_mask.any(2)).all()
        raw = (to_aligned(df) if schema == 'aligned' else df)[ft.flat_feature_names].notna().to_numpy()
        np.testing.assert_array_equal(T.flat_mask(), raw)
        np.testing.assert_array_equal(pickle.loads(pickle.dumps(ft)).transform(df).values, T.values)
        assert clone(ft).get_params() == ft.get_params()


def test_flat_features_in_a_pipeline(cells):
    from sklearn.pipeline import make_pipeline
    from sklearn.linear_model import LogisticRegression
    h = cells['human']
    ff = FlatFeatures('human', add_missing_indicators=True).fit(h)
    X = ff.transform(h)
    assert X.dtype == np.float32 and X.shape[1] == len(ff.get_feature_names_out())
    assert len(ff.indicator_idx_) > 0 and set(np.unique(X[:, -len(ff.indicator_idx_):])) <= {0.0, 1.0}
    # mouse cells straight into the aligned schema
    m = cells['mouse'].iloc[:400]
    p = make_pipeline(FlatFeatures('aligned'), LogisticRegression(max_iter=200)).fit(m, m.label4)
    assert p.predict(cells['human'].iloc[:20]).shape == (20,)


def test_cli_features(mirror):
    from ephys2tx.cli import main
    out = io.StringIO()
    with redirect_stdout(out): rc = main(['--data-dir', str(mirror), 'features', '--species', 'mouse'])
    s = out.getvalue()
    assert rc == 0 and '== mouse' in s and 'subthreshold' in s
    n_fam = len(get_schema('mouse'))
    n_cells = len(load_cells('mouse', data_dir=mirror, progress=False))
    assert f'fam_mask ({n_cells}, {n_fam})' in s


SHIFT_COLS = ['feature', 'family', 'unit', 'subclass', 'n_mouse', 'n_human', 'median_mouse', 'median_human',
              'd', 'ks', 'ks_p']


def test_domain_shift_on_real_tables(cells):
    am, ah = to_aligned(cells['mouse']), to_aligned(cells['human'])
    ds = domain_shift(am, ah)
    feats = [r.name for r in ALIGN_RULES]
    assert list(ds.columns[:len(SHIFT_COLS)]) == SHIFT_COLS and ds.shape == (len(feats) * 6, 13) and len(feats) == 25
    assert (ds.groupby('feature').size() == 6).all()
    assert sorted(ds.subclass.unique()) == ['Lamp5', 'Pvalb', 'Sst', 'Vip', 'all', MIX_MATCHED]
    assert ds.ks.between(0, 1).all() and ds.ks_p.between(0, 1).all() and np.isfinite(ds.d).all()
    assert all(ds.family == [family_of(f, 'aligned') for f in ds.feature])
    # a raw mouse table is aligned on the way in; counts and medians come from the aligned tables
    pd.testing.assert_frame_equal(domain_shift(cells['mouse'], cells['human']), ds)
    r = ds.set_index(['feature', 'subclass'])
    for sp, tab in [('mouse', am), ('human', ah)]:
        n = ds.pivot(index='feature', columns='subclass', values=f'n_{sp}')
        assert n[['Lamp5', 'Pvalb', 'Sst', 'Vip']].sum(axis=1).to_dict() == n['all'].to_dict()
        assert n['all'].to_dict() == tab[feats].notna().sum().to_dict()
        assert r.loc[('tau', 'all'), f'n_{sp}'] == tab.tau.notna().sum()
        sst = tab.loc[tab.label4 == 'Sst', 'input_resistance']
        assert r.loc[('input_resistance', 'Sst'), f'n_{sp}'] == sst.notna().sum()
        assert np.isclose(r.loc[('input_resistance', 'Sst'), f'median_{sp}'], sst.median())
    # d of a non-log feature is the textbook pooled-SD d; sag is larger in human in every subclass
    x, y = (t.loc[t.label4 == 'Vip', 'v_baseline'].dropna().to_numpy() for t in (am, ah))
    sd = np.sqrt(((len(x) - 1) * x.var(ddof=1) + (len(y) - 1) * y.var(ddof=1)) / (len(x) + len(y) - 2))
    assert np.isclose(r.loc[('v_baseline', 'Vip'), 'd'], (y.mean() - x.mean()) / sd)
    assert (r.loc['sag'].d > 0).all() and not r.loc[('v_baseline', 'Vip'), 'log'] and r.loc[('tau', 'Vip'), 'log']
    summ = shift_summary(ds)
    assert len(summ) == len(feats) and summ.mean_abs_d.is_monotonic_decreasing
    assert (summ.conserved == ((summ.mean_abs_d < 0.5) & (summ.mean_ks < 0.3))).all()
    within = ~ds.subclass.isin(['all', MIX_MATCHED])
    assert np.isclose(summ.loc['tau', 'mean_ks'], ds.loc[(ds.feature == 'tau') & within, 'ks'].mean())
    assert 'sag' in summ.index[:5] and 0 < summ.conserved.sum() < len(feats)
    with pytest.raises(DataError, match='rows of species'): domain_shift(ah, am)
    with pytest.raises(DataError, match='missing required feature column'): domain_shift(am.drop(columns=['tau']), ah)


def test_mix_matched_row_on_real_tables(cells):
    """The mix-matched row by hand: mouse cells weighted to the human class mix, weighted moments, Kish's size."""
    am, ah = to_aligned(cells['mouse']), to_aligned(cells['human'])
    ds = domain_shift(am, ah)
    r = ds.set_index(['feature', 'subclass'])
    x, y = am.v_baseline.to_numpy(), ah.v_baseline.to_numpy()
    ok = np.isfinite(x)
    w = mix_weights(am.label4[ok], class_mix(ah.label4[np.isfinite(y)]))
    reached = pd.Series(w).groupby(am.label4[ok].to_numpy()).sum() / w.sum()
    assert np.allclose(reached.sort_index(), class_mix(ah.label4).sort_index())
    x, y = x[ok], y[np.isfinite(y)]
    mx = (w * x).sum() / w.sum()
    vx = (w * (x - mx) ** 2).sum() / (w.sum() - (w ** 2).sum() / w.sum())
    n = w.sum() ** 2 / (w ** 2).sum()
    sd = np.sqrt(((n - 1) * vx + (len(y) - 1) * y.var(ddof=1)) / (n + len(y) - 2))
    row = r.loc[('v_baseline', MIX_MATCHED)]
    assert np.isclose(row.d, (y.mean() - mx) / sd) and np.isclose(row.n_eff_mouse, n) and n < row.n_mouse
    assert row.n_mouse == ok.sum() and row.n_human == len(y) and np.isclose(row.median_human, np.median(y))
    # the human mix is Pvalb-rich: the weighted mouse median of input resistance falls below the unweighted one
    assert r.loc[('input_resistance', MIX_MATCHED), 'median_mouse'] < r.loc[('input_resistance', 'all'), 'median_mouse']
    summ = shift_summary(ds)
    assert np.allclose(summ.d_all_matched, r.xs(MIX_MATCHED, level='subclass').d.reindex(summ.index))
    assert summ.d_all_matched.notna().all() and not np.allclose(summ.d_all_matched, summ.d_all, atol=0.05)
    old = domain_shift(am, ah, mix_matched=False)
    assert MIX_MATCHED not in set(old.subclass) and shift_summary(old).d_all_matched.isna().all()
    pd.testing.assert_frame_equal(old, ds[ds.subclass != MIX_MATCHED].reset_index(drop=True))


def test_weighted_statistics():
    from scipy.stats import ks_2samp
    rng = np.random.default_rng(11)
    x, y = rng.normal(0, 1, 57), rng.normal(0.7, 2, 31)
    sd = np.sqrt((56 * x.var(ddof=1) + 30 * y.var(ddof=1)) / 86)
    # weights of 1 (or none): the unweighted statistics
    assert np.isclose(weighted_cohen_d(x, y, np.ones(57), np.ones(31)), (y.mean() - x.mean()) / sd)
    assert np.isclose(weighted_ks(x, y, np.ones(57))[0], ks_2samp(x, y).statistic)
    assert np.isclose(weighted_ks(x, y)[1], ks_2samp(x, y, method='asymp').pvalue, atol=0.03)
    # integer weights = copies of cells (statistic and mean); scaling the weights changes nothing
    k = rng.integers(1, 4, 57)
    assert np.isclose(weighted_ks(x, y, k)[0], ks_2samp(np.repeat(x, k), y).statistic)
    assert weighted_ks(x, y, k) == weighted_ks(x, y, 10 * k)
    assert np.isclose(weighted_cohen_d(x, y, k), weighted_cohen_d(x, y, 10 * k))
    # zero weight and NaN: the cell is left out
    xn, wz = np.r_[x, 50., np.nan], np.r_[np.ones(57), 0., 1.]
    assert np.isclose(weighted_cohen_d(xn, y, wz), weighted_cohen_d(x, y))
    assert weighted_ks(xn, y, wz) == weighted_ks(x, y)
    assert np.isnan(weighted_cohen_d([1.], y)) and np.isnan(weighted_ks([], y)).all()
    assert weighted_cohen_d(np.full(5, 0.1), np.full(4, 0.1), np.arange(1., 6.)) == 0
    assert kish_n(np.ones(9)) == 9 and np.isclose(kish_n([1, 3]), 16 / 10) and kish_n([0, 0]) == 0
    with pytest.raises(ValueError, match='non-negative'): weighted_ks(x, y, -np.ones(57))
    with pytest.raises(ValueError, match='57 rows'): weighted_cohen_d(x, y, np.ones(3))
    # the p-value under uneven weights holds its level thanks to Kish's size (the raw count would not)
    p = [weighted_ks(rng.standard_normal(300), rng.standard_normal(200), np.where(np.arange(300) % 3, 1., 8.))[1]
         for _ in range(300)]
    assert 0.02 < np.mean(np.array(p) < 0.05) < 0.09


def _aligned_toy(x, species, classes=('Lamp5', 'Pvalb', 'Sst', 'Vip')):
    v = np.tile(x, len(classes))
    df = pd.DataFrame({r.name: v for r in ALIGN_RULES}).assign(tau=np.exp(v))
    df.insert(0, 'label4', np.repeat(classes, len(x))); df.insert(0, 'species', species)
    return df


def test_domain_shift_constructed():
    """What the notebook's constructed example leaves out: the 'all' count with NaNs, medians of a logged feature
    on the raw scale, and a subclass present in one species only."""
    z = np.random.default_rng(7).standard_normal(150); z = (z - z.mean()) / z.std(ddof=1)
    h = _aligned_toy(z + 1, 'human'); h.loc[:4, 'sag'] = np.nan   # 5 missing Lamp5 sag values
    one = domain_shift(_aligned_toy(z, 'mouse'), h).set_index(['feature', 'subclass'])
    assert one.loc[('sag', 'all'), 'n_human'] == 595 and np.isclose(one.loc[('sag', 'Pvalb'), 'd'], 1)
    assert np.isclose(one.loc[('tau', 'Sst'), 'median_human'], np.e * one.loc[('tau', 'Sst'), 'median_mouse'])
    # a subclass present in one species only: counts 0, statistics NaN
    m = _aligned_toy(z, 'mouse'); m.loc[m.label4 == 'Vip', 'label4'] = 'Sncg'
    r = domain_shift(m, _aligned_toy(z, 'human')).set_index(['feature', 'subclass'])
    assert r.loc[('tau', 'Sncg'), 'n_human'] == 0 and np.isnan(r.loc[('tau', 'Sncg'), ['d', 'ks']].astype(float)).all()
    # the mix-matched row compares the classes both species have: the human Vip cells are left out
    assert r.loc[('tau', MIX_MATCHED), 'n_human'] == 450 and r.loc[('tau', MIX_MATCHED), 'n_mouse'] == 450
    assert np.isclose(r.loc[('sag', MIX_MATCHED), 'd'], 0) and r.loc[('sag', MIX_MATCHED), 'ks'] == 0


def test_mix_matched_removes_a_pure_mix_effect():
    """Classes at different levels with the same values in both species, in different proportions; one mouse cell
    without a label (left out of the mix-matched row, kept in 'all')."""
    z = np.linspace(-1.5, 1.5, 30)
    part = lambda sp, c, lev, r: _aligned_toy(np.tile(z + lev, r), sp, (c,))
    m = pd.concat([part('mouse', 'Pvalb', 4, 1), part('mouse', 'Sst', 0, 4), part('mouse', 'Vip', 1, 2)],
                  ignore_index=True)
    h = pd.concat([part('human', 'Pvalb', 4, 5), part('human', 'Sst', 0, 1), part('human', 'Vip', 1, 1)],
                  ignore_index=True)
    m.loc[len(m)] = m.iloc[0]; m.loc[len(m) - 1, 'label4'] = None
    r = domain_shift(m, h).set_index(['feature', 'subclass'])
    assert np.allclose(r.xs('Sst', level='subclass').d, 0)
    al, mm = r.xs('all', level='subclass'), r.xs(MIX_MATCHED, level='subclass')
    assert (al.d > 1).all() and (al.n_mouse == len(m)).all() and (mm.n_mouse == len(m) - 1).all()
    assert np.allclose(mm.d, 0, atol=1e-9) and np.allclose(mm.ks, 0, atol=1e-9) and (mm.ks_p == 1).all()
    assert np.allclose(mm.median_mouse, mm.median_human)
    assert (mm.n_eff_mouse < mm.n_mouse).all() and (al.n_eff_mouse == al.n_mouse).all()
    summ = shift_summary(r.reset_index())
    assert (summ.mean_abs_d < 1e-9).all() and (summ.d_all > 1).all() and (summ.d_all_matched.abs() < 1e-9).all()


def test_plot_domain_shift():
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    z = np.linspace(-2, 2, 40)
    ds = domain_shift(_aligned_toy(z, 'mouse'), _aligned_toy(z + 0.5, 'human'))
    fig = plot_domain_shift(ds)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ['Lamp5', 'Pvalb', 'Sst', 'Vip', 'all',
                                                                     'all\nmix-matched']
    old = plot_domain_shift(domain_shift(_aligned_toy(z, 'mouse'), _aligned_toy(z, 'human'), mix_matched=False))
    assert [t.get_text() for t in old.axes[0].get_xticklabels()][-1] == 'all'
    assert len(fig.axes[0].get_yticklabels()) == len(ALIGN_RULES)
    with pytest.raises(ValueError, match="stat must be"): plot_domain_shift(ds, 'median')
    plt.close('all')


def test_cli_domain_shift(mirror, tmp_path):
    from ephys2tx.cli import main
    out = io.StringIO()
    with redirect_stdout(out): rc = main(['--data-dir', str(mirror), 'features', '--domain-shift', str(tmp_path)])
    s = out.getvalue()
    assert rc == 0 and 'd_all_matched' in s and 'class mix, mouse: Lamp5' in s
    assert {p.name for p in tmp_path.iterdir()} == {'domain_shift.csv', 'shift_summary.csv', 'domain_shift.png'}
    ds = pd.read_csv(tmp_path / 'domain_shift.csv')
    assert (ds.subclass == MIX_MATCHED).sum() == len(ALIGN_RULES) and 'n_eff_mouse' in ds.columns
    summ = pd.read_csv(tmp_path / 'shift_summary.csv', index_col=0)
    assert np.allclose(summ.d_all_matched, ds[ds.subclass == MIX_MATCHED].set_index('feature').d.reindex(summ.index))
