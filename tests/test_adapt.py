"`ephys2tx adapt` on real cells: a small Allen forest, a lab's shifted cells held out from its training, label errors."
import io, json
from contextlib import redirect_stderr, redirect_stdout
import numpy as np, pandas as pd
import pytest
from sklearn.metrics import f1_score
import ephys2tx
import ephys2tx.adapt as A
from ephys2tx.bundles import load_bundle, predict_cells, save_bundle
from ephys2tx.cli import main as cli_main
from ephys2tx.data import DataError, load_cells
from ephys2tx.evaluation import make_model
from ephys2tx.schema import schema_features
from ephys2tx.transfer import BestOfInnerCV

FEATURES = [f.name for f in schema_features('human')]
RAMP = [c for c in FEATURES if c.endswith('_ramp')]
SMALL = BestOfInnerCV(candidates=('rf', 'logreg'), params={'rf': dict(n_estimators=50)})   # a quick lab-only model


def _run(*argv):
    o, e = io.StringIO(), io.StringIO()
    with redirect_stdout(o), redirect_stderr(e): rc = cli_main(list(argv))
    return rc, o.getvalue(), e.getvalue()


def other_rig(cells):
    "The cells as another rig measures them: spike shapes, resistances and tau x1.5 + a tenth of their median; thresholds +5 mV."
    out = cells.copy()
    for c in FEATURES:
        if c.startswith(('width', 'upstroke_', 'downstroke_', 'tau')) or c in (
                'input_resistance', 'peak_impedance_chirp', 'low_freq_impedance_chirp'):
            out[c] = out[c] * 1.5 + 0.1 * cells[c].median()
        elif c.startswith('threshold_v'): out[c] = out[c] + 5.0
    return out


@pytest.fixture(scope='module')
def split(mirror):
    "The Allen human cells in three: 400 train the model, 150 are a lab's labelled cells, the rest its unseen ones."
    h = load_cells('human', data_dir=mirror, progress=False)
    h.attrs = {}
    order = np.random.default_rng(1).permutation(len(h))
    return tuple(h.iloc[i].reset_index(drop=True) for i in (order[:400], order[400:550], order[550:]))


@pytest.fixture(scope='module')
def allen_bundle(split, tmp_path_factory):
    train = split[0]
    rf = make_model('rf', 'human', 0, n_estimators=50).fit(train, train['subclass'])
    return save_bundle(rf, tmp_path_factory.mktemp('allen') / 'rf', reference=train, schema='human')


def _f1(y, pred): return f1_score(np.asarray(y).astype(str), np.asarray(pred).astype(str), average='macro')


def test_adapted_beats_the_unadapted_model_on_shifted_cells_and_its_bundle_predicts(split, allen_bundle, tmp_path):
    _, lab, unseen = split
    res = ephys2tx.adapt(allen_bundle, other_rig(lab), 'subclass', out=tmp_path / 'lab', progress=False,
                         lab_model=SMALL)
    s = res.summary
    assert s.loc['adapted', 'macro_f1'] > s.loc['unadapted', 'macro_f1'] + 0.05, s
    assert s.loc['adapted', 'folds'] == 5 and len(res.cv) == 15 and res.n_cells == 150
    means = s.loc[list(A.APPROACHES), 'macro_f1']
    assert res.choice == means.idxmax() and res.reason.startswith(res.choice)
    meta = json.loads((tmp_path / 'lab' / 'bundle.json').read_text())
    assert meta['model_name'] == res.choice and meta['adaptation']['choice'] == res.choice
    assert meta['adaptation']['label_column'] == 'subclass' and meta['trained_on']['n_cells'] == 150
    assert meta['validation']['macro_f1'] == pytest.approx(means.max())
    cells = other_rig(unseen).drop(columns=['subclass', 'label4'])
    out = ephys2tx.predict(cells, model=tmp_path / 'lab')
    assert (out.status == 'ok').all() and out['specimen_id'].tolist() == cells['specimen_id'].tolist()
    assert set(out.predicted_subclass) <= {'Lamp5', 'Pvalb', 'Sst', 'Vip'}
    same, masked = predict_cells(load_bundle(tmp_path / 'lab'), cells)
    assert masked == [] and same.predicted_subclass.tolist() == out.predicted_subclass.tolist()
    assert np.allclose(out.filter(like='prob_').to_numpy(), res.model.predict_proba(cells.assign(species='human')))


def test_another_rig_without_the_ramp_protocol_recovers_most_of_the_loss(split, allen_bundle, tmp_path):
    "Shifted, rescaled, every ramp feature absent: the bundle kept recovers half the loss or more on unseen cells."
    _, lab, unseen = split
    rig = lambda c: other_rig(c).drop(columns=RAMP)
    with pytest.raises(DataError, match=r"missing 11 feature column\(s\).*threshold_v_ramp"):
        A.adapt(allen_bundle, rig(lab), 'subclass', progress=False)
    res = A.adapt(allen_bundle, rig(lab), 'subclass', out=tmp_path / 'b', allow_missing=True, progress=False,
                  lab_model=SMALL)
    assert res.masked == RAMP and res.choice != 'unadapted', res
    b = load_bundle(tmp_path / 'b')
    assert not set(RAMP) & set(b.bundle_['input_features'])   # the bundle asks for the lab's columns only
    y = unseen['subclass']
    model = load_bundle(allen_bundle)
    clean = _f1(y, model.predict(unseen))
    unadapted_out, masked = predict_cells(model, rig(unseen), allow_missing=True)
    assert masked == RAMP
    unadapted = _f1(y, unadapted_out.predicted_subclass)
    kept_out, masked = predict_cells(b, rig(unseen))
    assert masked == [] and (kept_out.status == 'ok').all()
    kept = _f1(y, kept_out.predicted_subclass)
    assert clean - unadapted > 0.05, (clean, unadapted)   # the rig costs the model
    assert kept >= unadapted + 0.5 * (clean - unadapted), (clean, unadapted, kept)


def test_the_command_prints_the_comparison_and_the_choice(split, allen_bundle, tmp_path, monkeypatch):
    monkeypatch.setattr(A, 'LAB_CANDIDATES', ('logreg',))   # the default lab-only model, quicker
    _, lab, unseen = split
    other_rig(lab).to_csv(tmp_path / 'lab.csv', index=False)
    rc, out, err = _run('adapt', '--model', str(allen_bundle), '--input', str(tmp_path / 'lab.csv'),
                        '--label-column', 'subclass', '--out', str(tmp_path / 'mine'), '--folds', '3', '--no-progress')
    assert rc == 0, err
    assert 'macro-F1 on 150 labelled cells' in out and '3-fold cross-validation' in out
    for row in ('unadapted', 'lab_only', 'adapted', 'adapted - unadapted', 'adapted - lab_only'):
        assert any(line.startswith(row + ' ') for line in out.splitlines()), (row, out)
    choice = json.loads((tmp_path / 'mine' / 'bundle.json').read_text())['adaptation']['choice']
    assert f'kept {choice}: mean macro-F1' in out
    other_rig(unseen).drop(columns=['subclass']).to_csv(tmp_path / 'new.csv', index=False)
    rc, out, err = _run('predict', '--model', str(tmp_path / 'mine'), '--input', str(tmp_path / 'new.csv'),
                        '--out', str(tmp_path / 'p.csv'))
    assert rc == 0, err
    assert len(pd.read_csv(tmp_path / 'p.csv')) == len(unseen)


@pytest.mark.parametrize('change, column, message', [
    (lambda d: d.drop(columns=['subclass']), 'subclass',
     "no label column 'subclass'; column(s) ['label4'] hold labels of the model's classes"),
    (lambda d: d, 'specimen_id', "column 'specimen_id' holds numbers or IDs"),
    (lambda d: d.assign(subclass=d.subclass.replace('Lamp5', 'Sncg')), 'subclass',
     "column 'subclass' holds label(s) ['Sncg'] that the model does not know; its classes: ['Lamp5', 'Pvalb', 'Sst', "
     "'Vip']; column(s) ['label4'] hold labels"),
    (lambda d: pd.concat([d[d.subclass != 'Lamp5'], d[d.subclass == 'Lamp5'].iloc[:2]]), 'subclass',
     "column 'subclass': class(es) with fewer than 3 labelled cells: {'Lamp5': 2}"),
])
def test_bad_labels_are_named_errors(split, allen_bundle, tmp_path, change, column, message):
    src = tmp_path / 'lab.csv'
    change(split[1]).to_csv(src, index=False)
    with pytest.raises(DataError) as e: A.adapt(allen_bundle, src, column, progress=False)
    assert str(e.value).startswith(f'{src}: ') and message in str(e.value), str(e.value)
    rc, _, err = _run('adapt', '--model', str(allen_bundle), '--input', str(src), '--label-column', column,
                      '--out', str(tmp_path / 'x'))
    assert rc == 2 and err.count('\n') == 1 and message in err
    assert not (tmp_path / 'x').exists()


def test_wrong_column_names_the_column_that_holds_the_labels(split, allen_bundle):
    lab = split[1].drop(columns=['label4'])
    with pytest.raises(DataError, match="holds numbers or IDs .*use --label-column subclass"):
        A.adapt(allen_bundle, lab, 'specimen_id', progress=False)


def test_a_mouse_model_knows_sncg(split):
    lab = split[1].assign(subclass=split[1].subclass.replace('Lamp5', 'Sncg'))
    got = A.check_labels(lab, 'subclass', ['Lamp5', 'Pvalb', 'Sncg', 'Sst', 'Vip'], 'lab.csv')
    assert (got == 'Sncg').sum() == (split[1].subclass == 'Lamp5').sum()
    with pytest.raises(DataError, match="lab.csv: column 'subclass' holds label"):
        A.check_labels(lab, 'subclass', ['Lamp5', 'Pvalb', 'Sst', 'Vip'], 'lab.csv')


def test_the_module_is_the_function():
    assert callable(ephys2tx.adapt) and ephys2tx.adapt.adapt is A.adapt and ephys2tx.adapt.Realigned is A.Realigned
