"Named models on a fresh cache, `ephys2tx.predict`, and the `predict` / `train` / `models` commands on real cells."
import io, json, os
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
import numpy as np, pandas as pd
import pytest
import ephys2tx
from ephys2tx import predictor
from ephys2tx.cli import main as cli_main
from ephys2tx.data import load_cells


def _run(*argv):
    o, e = io.StringIO(), io.StringIO()
    with redirect_stdout(o), redirect_stderr(e): rc = cli_main(list(argv))
    return rc, o.getvalue(), e.getvalue()


@pytest.fixture(scope='module')
def human(mirror): return load_cells('human', data_dir=mirror, progress=False)


@pytest.fixture(scope='module')
def rf_bundle(human, tmp_path_factory, mirror):
    d = tmp_path_factory.mktemp('rf') / 'rf'
    predictor.train('human', d, model='rf', n_estimators=30, data_dir=mirror, progress=False)
    return d


def test_named_model_is_built_on_first_use_then_read_from_the_cache(human, mirror, tmp_path, monkeypatch):
    "A fresh cache: `predict --model human` builds the model of record once; the second call only loads it."
    monkeypatch.setenv('EPHYS2TX_CACHE', str(tmp_path / 'cache'))
    cells = human.drop(columns=['subclass']).sample(20, random_state=3)
    cells.to_csv(tmp_path / 'cells.csv', index=False)
    rc, out, err = _run('--data-dir', str(mirror), 'predict', '--model', 'human', '--input', str(tmp_path / 'cells.csv'),
                        '--out', str(tmp_path / 'p.csv'))
    assert rc == 0, err
    assert 'building the human model of record' in err and 'prediction sets at 90% coverage' in out
    p = pd.read_csv(tmp_path / 'p.csv')
    assert p['specimen_id'].tolist() == cells['specimen_id'].tolist()
    assert (p.status == 'ok').all() and set(p.predicted_subclass) <= {'Lamp5', 'Pvalb', 'Sst', 'Vip'}
    probs = p[[f'prob_{c}' for c in ('Lamp5', 'Pvalb', 'Sst', 'Vip')]]
    assert np.allclose(probs.sum(1), 1, atol=1e-6)
    assert all(c in s.split('|') for c, s in zip(p.predicted_subclass, p.prediction_set))
    assert (p.set_size == p.prediction_set.str.count('[|]') + 1).all()
    cached = predictor.named_path('human')
    meta = json.loads((cached / 'bundle.json').read_text())
    assert meta['model_name'] == 'record' and meta['validation']['calibration'] in ('none', 'temperature', 'sigmoid',
                                                                                     'isotonic')
    # a second call builds nothing: building now would fail
    monkeypatch.setattr(predictor, 'fit_model', lambda *a, **k: pytest.fail('the cached model was not reused'))
    rc, out, err = _run('--data-dir', str(mirror), 'predict', '--model', 'human', '--input', str(tmp_path / 'cells.csv'),
                        '--out', str(tmp_path / 'q.csv'))
    assert rc == 0 and 'building' not in err
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / 'q.csv'), p)
    rc, out, _ = _run('models')
    assert rc == 0 and out.splitlines()[1].split()[:4] == ['human', 'human', 'record', 'True']
    # the Python API gives the same table, from a DataFrame or a path
    api = ephys2tx.predict(cells, model='human', data_dir=mirror)
    assert api['prediction_set'].tolist() == p['prediction_set'].tolist()
    assert np.allclose(api['prob_Pvalb'], p['prob_Pvalb'])
    wide = ephys2tx.predict(cells, model='human', coverage=0.99, data_dir=mirror)
    assert (wide.set_size >= api.set_size).all() and wide.set_size.sum() > api.set_size.sum()


def test_predict_never_writes_over_its_input(rf_bundle, human, tmp_path):
    src = tmp_path / 'cells.csv'
    human.iloc[:10].to_csv(src, index=False)
    before = src.read_bytes()
    rc, _, err = _run('predict', '--model', str(rf_bundle), '--input', str(src), '--out', str(src))
    assert rc == 2 and str(src) in err
    assert src.read_bytes() == before


def test_predict_reads_a_spreadsheet_table_and_writes_parquet(rf_bundle, human, tmp_path):
    "A semicolon table with decimal commas reads like the CSV; the output format follows the suffix."
    cells = human.iloc[:15]
    cells.to_csv(tmp_path / 'comma.csv', index=False)
    cells.to_csv(tmp_path / 'semi.csv', index=False, sep=';', decimal=',')
    assert _run('predict', '--model', str(rf_bundle), '--input', str(tmp_path / 'comma.csv'), '--out',
                str(tmp_path / 'a.csv'))[0] == 0
    assert _run('predict', '--model', str(rf_bundle), '--input', str(tmp_path / 'semi.csv'), '--out',
                str(tmp_path / 'b.parquet'))[0] == 0
    a, b = pd.read_csv(tmp_path / 'a.csv'), pd.read_parquet(tmp_path / 'b.parquet')
    assert a.predicted_subclass.tolist() == b.predicted_subclass.tolist()
    assert np.allclose(a.prob_Sst, b.prob_Sst)


def test_a_file_in_many_parts_predicts_and_fails_as_the_whole_table(rf_bundle, human, tmp_path, monkeypatch):
    "Read and predicted a few cells at a time, a file gives the whole table's predictions and its errors."
    monkeypatch.setattr(predictor, 'CHUNK', 16)                       # 100 cells: 7 parts
    cells = human.iloc[:100]
    cells.to_csv(tmp_path / 'cells.csv', index=False)
    whole = ephys2tx.predict(cells, model=rf_bundle)
    assert _run('predict', '--model', str(rf_bundle), '--input', str(tmp_path / 'cells.csv'), '--out',
                str(tmp_path / 'p.csv'))[0] == 0
    parts = pd.read_csv(tmp_path / 'p.csv')
    assert parts.specimen_id.tolist() == whole.specimen_id.tolist()
    assert parts.predicted_subclass.tolist() == whole.predicted_subclass.tolist()
    assert np.allclose(parts.filter(like='prob_'), whole.filter(like='prob_'))
    twice = pd.concat([cells, cells.iloc[[3]]])                       # an ID met again in the last part
    twice.to_csv(tmp_path / 'twice.csv', index=False)
    rc, _, err = _run('predict', '--model', str(rf_bundle), '--input', str(tmp_path / 'twice.csv'), '--out',
                      str(tmp_path / 'q.csv'))
    assert rc == 2 and 'duplicate IDs' in err and str(cells.specimen_id.iloc[3]) in err
    assert not (tmp_path / 'q.csv').exists()                          # nothing written
    late = cells.copy()
    late.loc[late.index[20:], 'tau'] *= 1000                          # the last 80 cells in ms: the median moves
    late.to_csv(tmp_path / 'late.csv', index=False)
    rc, _, err = _run('predict', '--model', str(rf_bundle), '--input', str(tmp_path / 'late.csv'), '--out',
                      str(tmp_path / 'r.csv'))
    assert rc == 2 and 'tau' in err and 'median' in err and not (tmp_path / 'r.csv').exists()
    early = cells.copy()
    early.loc[early.index[:16], 'tau'] *= 1000                        # the first part alone is off; the table is not
    early.to_csv(tmp_path / 'early.csv', index=False)
    assert _run('predict', '--model', str(rf_bundle), '--input', str(tmp_path / 'early.csv'), '--out',
                str(tmp_path / 's.csv'))[0] == 0


def test_unknown_model_name_is_a_named_error(human, tmp_path):
    human.iloc[:3].to_csv(tmp_path / 'c.csv', index=False)
    rc, _, err = _run('predict', '--model', 'rat', '--input', str(tmp_path / 'c.csv'), '--out', str(tmp_path / 'p.csv'))
    assert rc == 2 and 'rat' in err and 'human' in err and not (tmp_path / 'p.csv').exists()


def test_train_any_registered_model(mirror, tmp_path, human):
    "`train --model NAME` writes a bundle of that model, which `predict` reads like a named one."
    rc, out, err = _run('--data-dir', str(mirror), 'train', '--species', 'human', '--model', 'logreg', '--out',
                        str(tmp_path / 'lr'))
    assert rc == 0, err
    m = ephys2tx.predict(human.iloc[:20], model=tmp_path / 'lr')
    assert json.loads((tmp_path / 'lr' / 'bundle.json').read_text())['model_name'] == 'logreg'
    from sklearn.metrics import f1_score
    assert f1_score(human.subclass.iloc[:20], m.predicted_subclass, average='macro') > 0.4
    rc, _, err = _run('train', '--species', 'human', '--model', 'logreg', '--out', str(tmp_path / 'x'), '--epochs', '5')
    assert rc == 2 and '--epochs' in err
