"""The attention BiLSTM: bundles round-trip exactly, bad input fails clearly, masks and SMOTE behave, training is leak-free.

Bundles of any model (format 3: a forest, boosting, a logistic regression, an ensemble holding the BiLSTM) and of
format 2 (the BiLSTM alone) are tested here too: round trips, untrusted types, prediction sets, the forest choice.
"""
import io, json, pickle, warnings
from contextlib import redirect_stderr, redirect_stdout
import numpy as np, pandas as pd, pytest, torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

from ephys2tx.bilstm import BiLSTMClassifier
from ephys2tx import bundles
from ephys2tx.bundles import (BUNDLE_FILES, TRUSTED_TYPES, BundleError, load_bundle, predict_cells, save_bundle,
                              subset_model, trust, type_name)
from ephys2tx.evaluation import make_model
from ephys2tx.interpret import family_permutation_importance
from ephys2tx.nets import VARIANTS
from ephys2tx.training import smote
from ephys2tx.cli import main as cli_main
from ephys2tx.data import DataError, load_cells
from ephys2tx.features import FamilyTransform

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings('ignore:.*training minimum')
TINY = dict(epochs=3, patience=2, device='cpu', random_state=0)


@pytest.fixture(scope='module')
def human(mirror):
    return load_cells('human', data_dir=mirror, progress=False)


@pytest.fixture(scope='module')
def fitted(human):
    return BiLSTMClassifier(schema='human', **TINY).fit(human, human['subclass'].to_numpy())


@pytest.mark.parametrize('version', [3, 2])
def test_save_load_predict_identical(tmp_path, human, fitted, version):
    "Both formats: the same probabilities and attention after the round trip, and the record of the model."
    P, A = fitted.predict_proba(human), fitted.attention(human)
    save_bundle(fitted, tmp_path / 'm', version=version)
    back = load_bundle(tmp_path / 'm')
    np.testing.assert_array_equal(back.predict_proba(human), P)
    np.testing.assert_array_equal(back.attention(human), A)
    meta = json.loads((tmp_path / 'm' / 'bundle.json').read_text())
    assert meta['format_version'] == version == back.manifest_['format_version']
    assert meta['classes'] == list(fitted.classes_) and meta['config']['schema'] == 'human'
    if version == 2:
        assert meta['schema']['families'] == fitted.families_
        assert sum(meta['schema']['widths']) == len(meta['input_features'])
    else:
        assert (meta['schema'], meta['families'], meta['model_name']) == ('human', fitted.families_, 'bilstm')
        assert meta['input_features'] == fitted.transform_.flat_feature_names
        assert meta['stored']['networks'][0]['attribute'] == 'net_' and meta['training']['n_val'] == fitted.n_val_
        pd.testing.assert_frame_equal(back.history_, fitted.history_)
        assert back.val_ids_ == fitted.val_ids_ and str(back.device_) == 'cpu'
    assert set(meta['data_sha256']) == {'mouse_gouwens2020', 'human_leedalley2023'}
    assert meta['versions']['torch'] == torch.__version__
    # pickling (joblib workers of the protocol) keeps the network too
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fitted)).predict_proba(human), P)


@pytest.mark.parametrize('damage', ['weights bytes', 'transform value', 'truncated config', 'manifest version',
                                    'file removed', 'pickle of format 1', 'model bytes', 'model removed',
                                    'weights of another network'])
def test_damaged_bundle_is_a_named_error(tmp_path, human, fitted, damage):
    "A bundle of real cells, changed on disk in one way: `predict` exits with status 2 and names the file; no output."
    v2 = damage in ('transform value', 'file removed', 'pickle of format 1')
    m = save_bundle(fitted, tmp_path / 'm', version=2 if v2 else 3)
    human.iloc[:10].to_csv(tmp_path / 'cells.csv', index=False)
    if damage == 'weights bytes':
        b = bytearray((m / 'weights.pt').read_bytes()); b[len(b) // 2] ^= 0xFF; (m / 'weights.pt').write_bytes(bytes(b))
        name = 'weights.pt'
    elif damage == 'transform value':
        st = json.loads((m / 'transform.json').read_text()); st['scale']['all'][3] *= 1000
        (m / 'transform.json').write_text(json.dumps(st)); name = 'transform.json'
    elif damage == 'truncated config':
        (m / 'bundle.json').write_text((m / 'bundle.json').read_text()[:-40]); name = 'bundle.json'
    elif damage == 'manifest version':
        man = json.loads((m / 'manifest.json').read_text()); man['format_version'] = 99
        (m / 'manifest.json').write_text(json.dumps(man)); name = 'manifest.json'
    elif damage == 'file removed':
        (m / 'transform.json').unlink(); name = 'transform.json'
    elif damage == 'model bytes':
        b = bytearray((m / 'model.skops').read_bytes()); b[len(b) // 3] ^= 0x10; (m / 'model.skops').write_bytes(bytes(b))
        name = 'model.skops'
    elif damage == 'model removed':
        (m / 'model.skops').unlink(); name = 'model.skops'
    elif damage == 'weights of another network':     # a consistent manifest around other tensors: still named
        w = torch.load(m / 'weights.pt', weights_only=True)
        torch.save({k: t[..., :1] if t.ndim else t for k, t in w.items()}, m / 'weights.pt')
        man = json.loads((m / 'manifest.json').read_text())
        man['files']['weights.pt'] = bundles.sha256sum(m / 'weights.pt')
        man['checksum'] = bundles.manifest_checksum(man)
        (m / 'manifest.json').write_text(json.dumps(man)); name = 'weights.pt'
    else:
        (m / 'manifest.json').unlink(); (m / 'transform.json').unlink()
        (m / 'transform.pkl').write_bytes(pickle.dumps(fitted.transform_)); name = 'format version 1'
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        rc = cli_main(['predict', '--model', str(m), '--input', str(tmp_path / 'cells.csv'), '--out', str(tmp_path / 'p.csv')])
    assert rc == 2 and name in err.getvalue() and 'Traceback' not in err.getvalue(), err.getvalue()
    assert not (tmp_path / 'p.csv').exists()
    with pytest.raises(BundleError): load_bundle(m)


def test_predict_cli_malformed_csv_names_missing_columns(tmp_path, human, fitted):
    save_bundle(fitted, tmp_path / 'm')
    cut = ['input_resistance', 'upstroke_rheo', 'sag']
    human.iloc[:25].drop(columns=cut).to_csv(tmp_path / 'bad.csv', index=False)
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        rc = cli_main(['predict', '--model', str(tmp_path / 'm'), '--input', str(tmp_path / 'bad.csv'),
                       '--out', str(tmp_path / 'p.csv')])
    assert rc == 2 and not (tmp_path / 'p.csv').exists()
    msg = err.getvalue()
    assert 'bad.csv' in msg and all(repr(c) in msg for c in cut) and '--allow-missing' in msg
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        rc = cli_main(['predict', '--model', str(tmp_path / 'm'), '--input', str(tmp_path / 'bad.csv'),
                       '--out', str(tmp_path / 'p.csv'), '--allow-missing'])
    assert rc == 0 and 'masked' in err.getvalue() and all(c in err.getvalue() for c in cut)
    out = pd.read_csv(tmp_path / 'p.csv')
    assert len(out) == 25 and out.specimen_id.tolist() == human.specimen_id.iloc[:25].tolist()
    probs = out[[f'prob_{c}' for c in fitted.classes_]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-6)
    assert (out.predicted_subclass.to_numpy() == fitted.classes_[probs.argmax(1)]).all()
    assert [c for c in out.columns if c.startswith('attention_')] == [f'attention_{f}' for f in fitted.families_]


def test_predict_keeps_ids_order_and_every_cell(tmp_path, human, fitted):
    "Real cells under a lab's own ID column, shuffled, two of them unscorable: all written, in input order."
    save_bundle(fitted, tmp_path / 'm')
    feats = fitted.transform_.flat_feature_names
    df = human.iloc[:30].sample(frac=1, random_state=1).rename(columns={'specimen_id': 'cell_name'})
    df['cell_name'] = 'lab-' + df['cell_name'].astype(str)
    df.loc[df.index[3], feats] = np.nan                     # nothing recorded
    df.loc[df.index[7], 'tau'] = np.inf
    df.loc[df.index[11], 'input_resistance'] = -789.4        # impossible: what QC drops from the release
    df.to_csv(tmp_path / 'lab.csv', index=False)
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        rc = cli_main(['predict', '--model', str(tmp_path / 'm'), '--input', str(tmp_path / 'lab.csv'),
                       '--out', str(tmp_path / 'p.csv')])
    assert rc == 0, err.getvalue()
    out = pd.read_csv(tmp_path / 'p.csv')
    assert out.cell_name.tolist() == df.cell_name.tolist() and 'row' not in out
    assert out.status[3] == 'not predicted: no observed feature family' and out.n_families[3] == 0
    assert out.status[7] == 'not predicted: infinite value in tau'
    assert out.status[11].startswith('not predicted: impossible value input_resistance = -789.4 (must be >0')
    assert out.prob_Sst[[3, 7, 11]].isna().all() and out.n_families[11] > 0      # its families are still listed
    assert (out.status.drop([3, 7, 11]) == 'ok').all() and out.predicted_subclass.drop([3, 7, 11]).notna().all()
    assert '1 cell(s) not predicted: no observed feature family' in err.getvalue()
    assert '1 cell(s) not predicted: impossible value input_resistance' in err.getvalue()
    ok = df.drop(df.index[[3, 7, 11]])                      # the same cells alone score the same
    alone, _ = predict_cells(fitted, ok)
    np.testing.assert_allclose(out.drop([3, 7, 11]).prob_Sst.to_numpy(), alone.prob_Sst.to_numpy(), atol=1e-6)
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        rc = cli_main(['predict', '--model', str(tmp_path / 'm'), '--input', str(tmp_path / 'lab.csv'),
                       '--out', str(tmp_path / 'q.csv'), '--id-column', 'nope'])
    assert rc == 2 and not (tmp_path / 'q.csv').exists()


def test_predict_wrong_unit_and_other_species_are_named(tmp_path, human, fitted, mirror):
    "Human tau handed in ms (the model reads s), and a mouse table: exit 2, the feature or both species named."
    save_bundle(fitted, tmp_path / 'm')
    human.iloc[:40].assign(tau=human.tau.iloc[:40] * 1000).to_csv(tmp_path / 'ms.csv', index=False)
    load_cells('mouse', data_dir=mirror, progress=False).iloc[:20].drop(columns='species').to_csv(
        tmp_path / 'mouse.csv', index=False)
    for name, want in [('ms.csv', ['tau', '[0.001, 0.3] s', 'given in ms?']),
                       ('mouse.csv', ['looks like a mouse cell table', 'trained on human cells'])]:
        err = io.StringIO()
        with redirect_stdout(io.StringIO()), redirect_stderr(err):
            rc = cli_main(['predict', '--model', str(tmp_path / 'm'), '--input', str(tmp_path / name),
                           '--out', str(tmp_path / 'p.csv'), '--allow-missing'])
        assert rc == 2 and all(w in err.getvalue() for w in want) and name in err.getvalue(), err.getvalue()
        assert not (tmp_path / 'p.csv').exists()


def test_predict_rejects_non_numeric(human, fitted):
    df = human.iloc[:5].copy(); df['tau'] = df['tau'].astype(object); df.loc[df.index[0], 'tau'] = 'fast'
    with pytest.raises(DataError, match=r"\['tau'\] hold non-numeric"): predict_cells(fitted, df)


def test_train_cli_writes_bundle(tmp_path, mirror):
    with redirect_stdout(io.StringIO()) as out, redirect_stderr(io.StringIO()):
        rc = cli_main(['--data-dir', str(mirror), 'train', '--species', 'human', '--model', 'bilstm',
                       '--out', str(tmp_path / 'b'), '--epochs', '2', '--device', 'cpu'])
    assert rc == 0 and 'bundle' in out.getvalue()
    meta = json.loads((tmp_path / 'b' / 'bundle.json').read_text())
    assert meta['trained_on']['species'] == 'human' and meta['config']['epochs'] == 2 and meta['config']['smote']
    assert meta['training']['n_synthetic'] > 0
    assert meta['trained_on']['n_cells'] == meta['training']['n_train'] + meta['training']['n_val']


def test_predict_with_a_third_of_the_features_uses_the_better_model_on_validation(tmp_path, mirror, human):
    "A bundle `train` wrote (with its training cells) given cells with two families: the choice is named and kept."
    from ephys2tx.features import get_schema
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        assert cli_main(['--data-dir', str(mirror), 'train', '--species', 'human', '--model', 'bilstm',
                         '--out', str(tmp_path / 'b'), '--epochs', '3', '--device', 'cpu']) == 0
    man = json.loads((tmp_path / 'b' / 'manifest.json').read_text())
    assert 'reference.npz' in man['files']
    keep = [f.name for fam in get_schema('human') if fam.name in ('subthreshold', 'fi') for f in fam.features]
    human[['specimen_id'] + keep].iloc[:60].to_csv(tmp_path / 'few.csv', index=False)
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        rc = cli_main(['predict', '--model', str(tmp_path / 'b'), '--input', str(tmp_path / 'few.csv'),
                       '--out', str(tmp_path / 'p.csv'), '--allow-missing'])
    assert rc == 0, err.getvalue()
    out = pd.read_csv(tmp_path / 'p.csv')
    m = load_bundle(tmp_path / 'b')
    _, masked = predict_cells(m, human[['specimen_id'] + keep].iloc[:5], allow_missing=True, subset=False)
    from ephys2tx.bundles import subset_model
    ch = subset_model(m, masked, refit=False)
    used = f"forest on the {len(keep)} features present" if ch['forest'] > ch['bilstm'] else 'bilstm'
    assert (out.predicted_by == used).all() and (out.status == 'ok').all()
    assert f"validation macro-F1 {max(ch['forest'], ch['bilstm']):.3f}" in err.getvalue(), err.getvalue()
    assert f"{ch['n_val']} validation cells" in err.getvalue()
    np.testing.assert_allclose(out.filter(like='prob_').sum(axis=1), 1, atol=1e-6)
    # a forest refit on every training cell with those features, as the bundle holds them
    if used != 'bilstm':
        from ephys2tx.evaluation import make_model
        ref = m.reference_
        rf = make_model('rf', 'human', 0).fit(ref.assign(**{c: np.nan for c in masked}), ref.subclass.astype(str))
        assert (rf.predict(human.iloc[:60].assign(**{c: np.nan for c in masked})) == out.predicted_subclass).all()


def test_every_variant_trains_and_predicts(human):
    sub = human.iloc[::3]
    for v in VARIANTS:
        m = BiLSTMClassifier(schema='human', variant=v, epochs=1, patience=1, device='cpu', random_state=0)
        m.fit(sub, sub['subclass'].to_numpy())
        assert m.predict_proba(sub).shape == (len(sub), 4)
        if v == 'last':
            with pytest.raises(ValueError, match='no attention'): m.attention(sub)
        else:
            np.testing.assert_allclose(m.attention(sub).sum(1), 1, atol=1e-5)


def test_learns_above_chance_on_held_out_cells(human):
    y = human['subclass'].to_numpy()
    tr, te = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y, random_state=0)
    m = BiLSTMClassifier(schema='human', epochs=25, patience=25, device='cpu', random_state=0).fit(human.iloc[tr], y[tr])
    f1 = f1_score(y[te], m.predict(human.iloc[te]), average='macro')
    chance = f1_score(y[te], np.random.default_rng(0).permutation(y[te]), average='macro')
    assert f1 > chance + 0.2, (f1, chance)


def test_transform_fitted_on_training_rows_only(human):
    y = human['subclass'].to_numpy()
    tr, va = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y, random_state=1)
    Xv = human.iloc[va].copy()
    feats = FamilyTransform('human').fit(human.iloc[tr]).flat_feature_names
    Xv[feats] = Xv[feats] * 7.0 + 3.0                        # wild validation rows must not move the statistics
    m = BiLSTMClassifier(schema='human', epochs=1, patience=1, device='cpu').fit(
        human.iloc[tr], y[tr], validation=(Xv, y[va]))
    ref = FamilyTransform('human').fit(human.iloc[tr])
    pd.testing.assert_frame_equal(m.transform_.stats(), ref.stats())
    assert m.n_train_ == len(tr) and m.n_val_ == len(va)


def test_deterministic_and_seed_dependent(human):
    sub = human.iloc[::2]; y = sub['subclass'].to_numpy()
    p = [BiLSTMClassifier(schema='human', epochs=2, device='cpu', random_state=s).fit(sub, y).predict_proba(sub)
         for s in (3, 3, 4)]
    np.testing.assert_array_equal(p[0], p[1])
    assert not np.allclose(p[0], p[2])


def test_smote_balances_training_rows_only(human):
    y = human['subclass'].to_numpy()
    m = BiLSTMClassifier(schema='human', epochs=1, device='cpu', smote=True, val_frac=0.2).fit(human, y)
    n_val = m.n_val_
    ytr, _ = train_test_split(y, test_size=0.2, stratify=y, random_state=0)
    assert m.n_train_ == len(ytr) and n_val == len(y) - len(ytr)
    assert m.n_train_ + m.n_synthetic_ == 4 * pd.Series(ytr).value_counts().max()
    np.testing.assert_allclose(m.class_weight_, 1.0)


def test_smote_points_lie_between_same_class_neighbours():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (50, 4)), rng.normal(20, 1, (6, 4))]); y = np.array([0] * 50 + [1] * 6)
    Xs, ys, ms = smote(X, y, k=3, random_state=0)
    syn = Xs[56:]
    # each synthetic point is collinear with some pair of minority cells (the notebook checks counts and bounds)
    for s in syn[:10]:
        ok = False
        for i in range(50, 56):
            for j in range(50, 56):
                d = X[j] - X[i]
                if i == j or not d.any(): continue
                t = np.dot(s - X[i], d) / np.dot(d, d)
                ok |= 0 <= t <= 1 and np.allclose(X[i] + t * d, s)
        assert ok


def test_permutation_importance_on_held_out(human, fitted):
    imp = family_permutation_importance(fitted, human.iloc[:120], human['subclass'].iloc[:120], n_repeats=2)
    assert imp.family.tolist() == fitted.families_ and np.isfinite(imp.importance).all()
    assert imp.base_macro_f1.nunique() == 1


# -- bundles of any model ----------------------------------------------------------------------------------------------

class Remark:
    "An object of a type that no chapter trusts."
    def __init__(self, text): self.text = text


class TopTwo(ClassifierMixin, BaseEstimator):
    "A fitted model whose prediction sets are its two most probable classes."
    def __init__(self, model=None): self.model = model
    def fit(self, X, y): return self
    @property
    def classes_(self): return self.model.classes_
    def predict_proba(self, X): return self.model.predict_proba(X)
    def predict_set(self, X):
        S = np.zeros((len(X), len(self.classes_)), bool)
        np.put_along_axis(S, np.argsort(-self.predict_proba(X), axis=1, kind='stable')[:, :2], True, axis=1)
        return S


@pytest.fixture(scope='module')
def ensemble(human):
    "A soft-voting ensemble of the forest and the BiLSTM (a torch network inside a member); its types trusted."
    from sklearn.ensemble import VotingClassifier
    trust(VotingClassifier, 'sklearn.utils._bunch.Bunch')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return VotingClassifier(voting='soft', estimators=[
            ('rf', make_model('rf', 'human', n_estimators=20)),
            ('bilstm', make_model('bilstm', 'human', epochs=2, device='cpu'))]).fit(human, human['subclass'].to_numpy())


@pytest.mark.parametrize('kind', ['rf', 'hgb', 'logreg', 'bilstm', 'ensemble'])
def test_round_trip_of_every_kind(tmp_path, human, fitted, ensemble, kind):
    "Format 3 for every kind of model: identical probabilities on real human cells, and the model described."
    y = human['subclass'].to_numpy()
    make = {'rf': lambda: make_model('rf', 'human', n_estimators=20).fit(human, y),
            'hgb': lambda: make_model('hgb', 'human', max_iter=5).fit(human, y),
            'logreg': lambda: make_model('logreg', 'human').fit(human, y),
            'bilstm': lambda: fitted, 'ensemble': lambda: ensemble}
    model = make[kind]()
    P = model.predict_proba(human)
    back = load_bundle(save_bundle(model, tmp_path / kind, reference=human))
    assert type(back) is type(model) and back is not model
    np.testing.assert_array_equal(back.predict_proba(human), P)
    meta, files = back.bundle_, back.manifest_['files']
    assert meta['model_name'] == (None if kind == 'ensemble' else kind) and meta['schema'] == 'human'
    assert meta['classes'] == sorted(set(y)) and meta['trained_on']['n_cells'] == len(human)
    assert meta['input_features'] == fitted.transform_.flat_feature_names and len(back.reference_) == len(human)
    nets = kind in ('bilstm', 'ensemble')
    assert ('weights.pt' in files) == nets and len(meta['stored']['networks']) == nets
    assert sorted(files) == sorted(BUNDLE_FILES[3] + ('reference.npz',) + (('weights.pt',) if nets else ()))
    out, _ = predict_cells(back, human.iloc[:10])
    np.testing.assert_allclose(out[[f'prob_{c}' for c in meta['classes']]].to_numpy(), P[:10], atol=1e-6)
    assert any(c.startswith('attention_') for c in out.columns) == (kind == 'bilstm')


def test_untrusted_type_is_refused(tmp_path, human, monkeypatch):
    "A model holding an object of an untrusted type: not written; written (trusted then), its bundle refused on load."
    m = make_model('rf', 'human', n_estimators=3).fit(human, human['subclass'].to_numpy())
    m.remark_ = Remark('written by the test')
    with pytest.raises(ValueError, match='Remark'): save_bundle(m, tmp_path / 'b')
    monkeypatch.setattr(bundles, 'TRUSTED_TYPES', list(TRUSTED_TYPES))
    trust(Remark)
    save_bundle(m, tmp_path / 'b')
    monkeypatch.undo()
    assert type_name(Remark) not in bundles.TRUSTED_TYPES
    with pytest.raises(BundleError) as e: load_bundle(tmp_path / 'b')
    assert type_name(Remark) in str(e.value) and str(tmp_path / 'b' / 'model.skops') in str(e.value)
    human.iloc[:5].to_csv(tmp_path / 'cells.csv', index=False)
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        rc = cli_main(['predict', '--model', str(tmp_path / 'b'), '--input', str(tmp_path / 'cells.csv'),
                       '--out', str(tmp_path / 'p.csv')])
    assert rc == 2 and type_name(Remark) in err.getvalue() and not (tmp_path / 'p.csv').exists()


def test_format_2_bundle_predicts_as_format_3(tmp_path, human, fitted):
    "A bundle of format 2 (the writer of earlier versions) and one of format 3: the same output through `predict`."
    human.iloc[:20].to_csv(tmp_path / 'cells.csv', index=False)
    outs = []
    for v in (2, 3):
        save_bundle(fitted, tmp_path / f'v{v}', version=v)
        assert json.loads((tmp_path / f'v{v}' / 'manifest.json').read_text())['format_version'] == v
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            assert cli_main(['predict', '--model', str(tmp_path / f'v{v}'), '--input', str(tmp_path / 'cells.csv'),
                             '--out', str(tmp_path / f'p{v}.csv')]) == 0
        outs.append(pd.read_csv(tmp_path / f'p{v}.csv'))
    pd.testing.assert_frame_equal(*outs)
    assert 'attention_subthreshold' in outs[0] and (outs[0].predicted_by == 'bilstm').all()


def test_predict_cells_writes_prediction_sets(human):
    "A model with `predict_set`: its sets ('|'-joined, in `classes_` order) and their sizes; none for a cell not scored."
    y = human['subclass'].to_numpy()
    m = TopTwo(make_model('rf', 'human', n_estimators=20).fit(human, y))
    cells = human.iloc[:15].copy()
    cells.loc[cells.index[4], m.model[0].ft_.flat_feature_names] = np.nan
    out, _ = predict_cells(m, cells)
    assert pd.isna(out.prediction_set[4]) and pd.isna(out.set_size[4]) and out.status[4] != 'ok'
    P = m.predict_proba(cells.drop(index=cells.index[4]))
    top2 = ['|'.join(m.classes_[np.sort(np.argsort(-p, kind='stable')[:2])]) for p in P]
    assert out.prediction_set.drop(4).tolist() == top2 and (out.set_size.drop(4) == 2).all()
    assert all(p in s.split('|') for p, s in zip(out.predicted_subclass.drop(4), out.prediction_set.drop(4)))
    assert 'prediction_set' not in predict_cells(m.model, cells)[0]


def test_allow_missing_chooses_by_cross_validation_for_a_forest_bundle(tmp_path, human):
    "A forest bundle with its training cells, given a third of the features: the 3-fold choice is made and kept."
    import re
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold
    from ephys2tx.features import get_schema
    ref = human.iloc[::4].reset_index(drop=True)
    rf = make_model('rf', 'human', n_estimators=20).fit(ref, ref['subclass'].to_numpy())
    save_bundle(rf, tmp_path / 'b', reference=ref)
    keep = [f.name for fam in get_schema('human') if fam.name in ('subthreshold', 'fi') for f in fam.features]
    few = human[['specimen_id'] + keep].iloc[1:60:2]
    few.to_csv(tmp_path / 'few.csv', index=False)
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        rc = cli_main(['predict', '--model', str(tmp_path / 'b'), '--input', str(tmp_path / 'few.csv'),
                       '--out', str(tmp_path / 'p.csv'), '--allow-missing'])
    assert rc == 0, err.getvalue()
    said = re.search(r"cross-validated macro-F1 ([0-9.]+); rf ([0-9.]+), forest ([0-9.]+), in 3-fold cross-validation "
                     r"on the bundle's (\d+) training cells", err.getvalue())
    assert said, err.getvalue()
    # the same scores, computed here from the protocol: fit with every feature, scored with the others hidden
    out, m = pd.read_csv(tmp_path / 'p.csv'), load_bundle(tmp_path / 'b')
    masked = [c for c in m.bundle_['input_features'] if c not in keep]
    R, y = m.reference_.assign(**{c: np.nan for c in masked}), m.reference_['subclass'].to_numpy().astype(str)
    seen = R[keep].notna().any(axis=1).to_numpy()
    f1 = lambda t, p: f1_score(t, p, average='macro', labels=m.classes_, zero_division=0)
    scores = {'rf': [], 'forest': []}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')           # the forest's transform: the hidden features missing in every cell
        for tr, te in StratifiedKFold(3, shuffle=True, random_state=0).split(R, y):
            te = te[seen[te]]
            scores['rf'].append(f1(y[te], clone(m).fit(m.reference_.iloc[tr], y[tr]).predict(R.iloc[te])))
            forest = make_model('rf', 'human', 0).fit(R.iloc[tr], y[tr])
            scores['forest'].append(f1(y[te], forest.predict(R.iloc[te])))
    got = {k: float(np.mean(v)) for k, v in scores.items()}
    assert (float(said[2]), float(said[3]), int(said[4])) == (round(got['rf'], 3), round(got['forest'], 3), seen.sum())
    used = f"forest on the {len(keep)} features present" if got['forest'] > got['rf'] else 'rf'
    assert (out.predicted_by == used).all() and (out.status == 'ok').all() and float(said[1]) == round(max(got.values()), 3)
    if used != 'rf':       # the chosen forest is refit on every training cell
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            refit = make_model('rf', 'human', 0).fit(R, y)
        assert (refit.predict(few.reindex(columns=list(R.columns))) == out.predicted_subclass).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_mixed_precision_and_cpu_reload(tmp_path, human):
    y = human['subclass'].to_numpy()
    m = BiLSTMClassifier(schema='human', epochs=3, device='cuda', random_state=0).fit(human, y)
    assert next(m.net_.parameters()).is_cuda
    P = m.predict_proba(human)
    for v in (3, 2):
        save_bundle(m, tmp_path / f'g{v}', version=v)
        back = load_bundle(tmp_path / f'g{v}', device='cpu')
        assert next(back.net_.parameters()).device.type == 'cpu' and back.device_.type == 'cpu'
        np.testing.assert_allclose(back.predict_proba(human), P, atol=1e-4)
        back = load_bundle(tmp_path / f'g{v}', device='cuda')
        assert next(back.net_.parameters()).is_cuda and back.device == 'cuda'
        np.testing.assert_allclose(back.predict_proba(human), P, atol=1e-4)
