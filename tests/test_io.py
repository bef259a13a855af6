"""Cell tables in and out: delimited text of any separator and decimal mark, Parquet and .h5ad, read back unchanged;
`write_table` never writes onto its source and replaces an output only with a complete file."""
import re, shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from ephys2tx.data import DataError, HUMAN_FEATURES_FILE, load_cells, read_table, write_table

DATA = Path(__file__).parent / 'data'
ANNDATA_DENSE, ANNDATA_CSR = DATA / 'anndata_written.h5ad', DATA / 'anndata_written_csr.h5ad'

# the values tests/data/make_anndata_written.py gave anndata to write
FIXTURE_OBS = pd.DataFrame({
    'cell_id': [f'cell_{i}' for i in range(6)],
    'donor': ['H18.001', 'H18.002', 'H19.003', 'H19.004', 'H20.005', 'H20.006'],
    'subclass': ['Pvalb', 'Sst', 'Pvalb', 'Vip', np.nan, 'Sst'],
    'soma_depth': [120.5, 340.25, np.nan, 88.0, 410.75, 265.125],
    'n_sweeps': np.array([12, 9, 15, 11, 8, 14], dtype='int64'),
})
FIXTURE_FEATURES = ['input_resistance', 'tau', 'v_baseline', 'sag']
FIXTURE_X = np.array([[150.5, 12.25, -70.5, 0.05],
                      [98.0, 8.5, -65.25, 0.125],
                      [210.75, np.nan, -72.0, 0.0],
                      [55.5, 20.0, -68.75, 0.25],
                      [175.25, 15.5, np.nan, 0.0625],
                      [130.0, 10.75, -71.5, 0.0]])


@pytest.fixture(scope='module')
def human(mirror, tmp_path_factory):
    "(the human cell table, the same table as a user's comma-separated cells.csv read by `read_table`)."
    cells = load_cells('human', data_dir=mirror, progress=False)
    p = tmp_path_factory.mktemp('human') / 'cells.csv'
    cells.to_csv(p, index=False)
    return cells, read_table(p, id_col='specimen_id')


def test_the_comma_separated_reference_holds_the_cells(human):
    cells, ref = human
    assert list(ref.columns) == list(cells.columns)
    assert ref.specimen_id.tolist() == cells.specimen_id.tolist()
    feats = cells.attrs['features']
    pd.testing.assert_frame_equal(ref[feats], cells[feats])
    assert ref[feats].isna().any().any()   # missing values travel too


def _semicolon(df, p):
    df.to_csv(p, sep=';', decimal=',', index=False)
    assert re.search(r';-?\d+,\d+;', p.read_text()), 'no decimal comma written'


def _tab(df, p):
    df.to_csv(p, sep='\t', index=False)


WRITERS = {'semicolon, decimal comma': ('cells.csv', _semicolon), 'tab': ('cells.csv', _tab),
           'parquet': ('cells.parquet', write_table), 'h5ad': ('cells.h5ad', write_table)}


@pytest.mark.parametrize('form', list(WRITERS))
def test_the_human_table_reads_back_unchanged(human, tmp_path, form):
    _, ref = human
    name, write = WRITERS[form]
    write(ref, tmp_path / name)
    back = read_table(tmp_path / name, required=['specimen_id', 'tau'], numeric=['tau'], id_col='specimen_id')
    pd.testing.assert_frame_equal(back, ref)


def test_the_raw_release_file_reads_with_semicolons_and_decimal_commas(mirror, tmp_path):
    raw = mirror / 'human_leedalley2023' / HUMAN_FEATURES_FILE
    ref = read_table(raw, id_col='specimen_id')
    p = tmp_path / 'fx.csv'
    _semicolon(ref, p)
    with pytest.raises(pd.errors.ParserError):   # what a comma-separated reader makes of it
        pd.read_csv(p, decimal='.', sep=',')
    pd.testing.assert_frame_equal(read_table(p, numeric=list(ref.columns), id_col='specimen_id'), ref)


@pytest.mark.parametrize('sep,text', [(';', 'specimen_id;tau\n1;0,5\n2;0,5;9;9\n'),
                                      ('\t', 'specimen_id\ttau\n1\t0.5\n2\t0.5\t9\t9\n')])
def test_a_table_that_does_not_parse_names_the_file_and_separator(tmp_path, sep, text):
    p = tmp_path / 'bad.csv'
    p.write_text(text)
    with pytest.raises(DataError) as e:
        read_table(p)
    msg = str(e.value)
    assert msg.startswith(f'{p}: cannot be parsed as a table read with separator {sep!r}'), msg
    assert 'Expected 2 fields in line 3, saw 4' in msg


def test_a_decimal_comma_in_a_comma_separated_file_is_not_guessed(tmp_path):
    "With ',' as separator, '1,5' is two fields: the reader says so instead of reading other numbers."
    p = tmp_path / 'x.csv'
    p.write_text('specimen_id,tau\n1,0.5\n2,1,5\n')
    with pytest.raises(DataError, match=r"separator ','.*Expected 2 fields in line 3, saw 3"):
        read_table(p)


def test_a_parquet_index_with_a_name_becomes_a_column_and_a_broken_file_is_a_data_error(tmp_path):
    df = pd.DataFrame({'tau': [1.5, 2.5]}, index=pd.Index(['a', 'b'], name='cell_id'))
    df.to_parquet(tmp_path / 't.pq')
    pd.testing.assert_frame_equal(read_table(tmp_path / 't.pq'), df.reset_index())
    (tmp_path / 'broken.parquet').write_bytes((tmp_path / 't.pq').read_bytes()[:40])
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'broken.parquet'}: cannot be read as Parquet")):
        read_table(tmp_path / 'broken.parquet')


def test_the_h5ad_that_anndata_wrote_reads_every_value():
    df = read_table(ANNDATA_DENSE, id_col='cell_id')
    assert list(df.columns) == list(FIXTURE_OBS.columns) + FIXTURE_FEATURES
    pd.testing.assert_frame_equal(df[list(FIXTURE_OBS.columns)], FIXTURE_OBS)
    np.testing.assert_array_equal(df[FIXTURE_FEATURES].to_numpy(), FIXTURE_X)


def test_a_csr_x_that_anndata_wrote_reads_as_the_dense_matrix():
    df = read_table(ANNDATA_CSR)
    with h5py.File(ANNDATA_CSR) as f:
        assert f['X'].attrs['encoding-type'] == 'csr_matrix'
    X = np.nan_to_num(FIXTURE_X) * (np.arange(24).reshape(6, 4) % 3 != 0)   # as the script made it
    pd.testing.assert_frame_equal(df[list(FIXTURE_OBS.columns)], FIXTURE_OBS)
    np.testing.assert_array_equal(df[FIXTURE_FEATURES].to_numpy(), X)


def _copy(src, dest, edit):
    shutil.copyfile(src, dest)
    with h5py.File(dest, 'r+') as f: edit(f)
    return dest


def _two_d(f):
    del f['obs/soma_depth']
    f['obs'].create_dataset('soma_depth', data=np.zeros((6, 2)))


def _unknown(f):
    f['obs/subclass'].attrs['encoding-type'] = 'awkward-array'


def _short_x(f):
    del f['X']
    f.create_dataset('X', data=np.zeros((6, 3)))


@pytest.mark.parametrize('edit,element', [(_two_d, 'obs/soma_depth'), (_unknown, 'obs/subclass'), (_short_x, 'X')])
def test_an_h5ad_element_it_cannot_read_is_named(tmp_path, edit, element):
    p = _copy(ANNDATA_DENSE, tmp_path / 'odd.h5ad', edit)
    with pytest.raises(DataError) as e:
        read_table(p)
    assert str(e.value).startswith(str(p)) and element in str(e.value), str(e.value)


def test_a_file_that_is_not_hdf5_is_a_data_error(tmp_path):
    p = tmp_path / 'cells.h5ad'
    p.write_text('specimen_id,tau\n1,2\n')
    with pytest.raises(DataError, match=re.escape(f'{p}: cannot be read as an AnnData (.h5ad) file')):
        read_table(p)


def test_write_table_refuses_its_source_and_leaves_it_unchanged(tmp_path):
    df = pd.DataFrame({'cell_id': ['a', 'b'], 'tau': [1.5, 2.5]})
    src = tmp_path / 'cells.csv'
    df.to_csv(src, index=False)
    before = src.read_bytes()
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'link.csv').symlink_to(src)
    for out in (src, tmp_path / 'sub' / '..' / 'cells.csv', tmp_path / 'link.csv'):
        with pytest.raises(DataError, match='is the input table'):
            write_table(df.assign(tau=0.0), out, source=src)
    assert src.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ['cells.csv', 'link.csv', 'sub']
    h5 = write_table(df, tmp_path / 'cells.h5ad')
    with pytest.raises(DataError, match='is the input table'):
        write_table(df.assign(tau=0.0), h5, source=h5)
    pd.testing.assert_frame_equal(read_table(h5), df)


def test_an_unknown_suffix_lists_the_supported_ones_and_writes_nothing(tmp_path):
    with pytest.raises(DataError, match=r"unknown table format '\.xlsx'; supported: \.csv .*\.parquet .*\.h5ad"):
        write_table(pd.DataFrame({'a': [1]}), tmp_path / 'out.xlsx')
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_keeps_the_old_output_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    out = tmp_path / 'out.csv'
    out.write_text('old output\n')
    def half_written(self, path, **kw):
        Path(path).write_text('cell_id,ta')
        raise RuntimeError('disk full')
    monkeypatch.setattr(pd.DataFrame, 'to_csv', half_written)
    with pytest.raises(RuntimeError, match='disk full'):
        write_table(pd.DataFrame({'cell_id': ['a'], 'tau': [1.0]}), out)
    monkeypatch.undo()
    assert out.read_text() == 'old output\n'
    assert [p.name for p in tmp_path.iterdir()] == ['out.csv']


def test_an_h5ad_that_fails_midway_keeps_the_old_output(tmp_path):
    good = pd.DataFrame({'cell_id': ['a', 'b'], 'tau': [1.0, 2.0]})
    out = write_table(good, tmp_path / 'out.h5ad')
    before = out.read_bytes()
    bad = good.assign(when=pd.Series([pd.Timestamp('2024-01-01'), pd.Timestamp('2024-01-02')], dtype=object))
    with pytest.raises(DataError, match=r"out\.h5ad: obs: column 'when' holds values of type\(s\) \['Timestamp'\]"):
        write_table(bad, out)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ['out.h5ad']


def _spec_attrs(path) -> list:
    "The elements of an .h5ad file that lack an encoding-type or encoding-version attribute."
    bare = []
    with h5py.File(path) as f:
        f.visititems(lambda n, o: bare.append(n) if not {'encoding-type', 'encoding-version'} <= set(o.attrs) else None)
        assert f.attrs['encoding-type'] == 'anndata'
    return bare


def test_a_new_h5ad_is_valid_anndata_with_the_table_as_obs(human, tmp_path):
    _, ref = human
    out = write_table(ref, tmp_path / 'cells.h5ad')
    assert _spec_attrs(out) == []
    with h5py.File(out) as f:
        assert f['X'].shape == (len(ref), 0) and len(f['var/_index']) == 0
        assert list(f['obs'].attrs['column-order']) == list(ref.columns)
        assert f['obs/layer'].attrs['encoding-type'] == 'categorical'   # strings with missing values
        assert f['obs/donor'].attrs['encoding-type'] == 'string-array'


def _x_parts(f) -> dict:
    "The arrays of `X`: the dense matrix, or the data/indices/indptr of a sparse one."
    return {k: f['X'][k][()] for k in f['X']} if isinstance(f['X'], h5py.Group) else {'': f['X'][()]}


def test_an_h5ad_source_keeps_x_and_var_and_gains_the_obs_columns(tmp_path):
    subclass = ['Pvalb', 'Sst', None, 'Vip', 'Sst', 'Vip']
    pred = pd.DataFrame({'cell_id': FIXTURE_OBS.cell_id, 'predicted_subclass': subclass,
                         'prob_Pvalb': np.linspace(0, 1, 6), 'donor': FIXTURE_OBS.donor + '-b'})
    for src in (ANNDATA_DENSE, ANNDATA_CSR):
        out = write_table(pred, tmp_path / f'pred_{src.stem}.h5ad', source=src)
        with h5py.File(src) as a, h5py.File(out) as b:
            xa, xb = _x_parts(a), _x_parts(b)
            assert list(xa) == list(xb)
            for k in xa: np.testing.assert_array_equal(xa[k], xb[k])
            assert list(a['var/feature'].asstr()) == list(b['var/feature'].asstr()) == FIXTURE_FEATURES
            assert list(b['obs'].attrs['column-order']) == ['donor', 'subclass', 'soma_depth', 'n_sweeps',
                                                            'predicted_subclass', 'prob_Pvalb']
        back, before = read_table(out), read_table(src)
        pd.testing.assert_frame_equal(back[pred.columns].reset_index(drop=True), pred)   # donor replaced
        keep = [c for c in before.columns if c != 'donor']
        pd.testing.assert_frame_equal(back[keep], before[keep])


def test_an_h5ad_source_must_match_the_rows(tmp_path):
    pred = pd.DataFrame({'cell_id': FIXTURE_OBS.cell_id, 'p': np.arange(6.)})
    with pytest.raises(DataError, match=r'5 rows for the 6 obs rows'):
        write_table(pred.iloc[:5], tmp_path / 'p.h5ad', source=ANNDATA_DENSE)
    with pytest.raises(DataError, match=r"column 'cell_id' does not list the obs names"):
        write_table(pred.iloc[::-1], tmp_path / 'p.h5ad', source=ANNDATA_DENSE)
    assert list(tmp_path.iterdir()) == []


def test_predictions_round_trip_through_the_human_h5ad(human, tmp_path):
    "The human table as .h5ad, then predictions written into a copy of it: every cell keeps its values and ID."
    _, ref = human
    src = write_table(ref, tmp_path / 'cells.h5ad')
    pred = pd.DataFrame({'specimen_id': ref.specimen_id, 'status': 'ok', 'predicted_subclass': ref.subclass.to_numpy()})
    out = write_table(pred, tmp_path / 'pred.h5ad', source=src)
    back = read_table(out, id_col='specimen_id')
    pd.testing.assert_frame_equal(back[list(ref.columns)], ref)
    assert back.status.eq('ok').all() and back.predicted_subclass.tolist() == ref.subclass.tolist()
