"NWB -> Gouwens feature vectors: synthetic NWB files written here, extracted through Dask, IPFX underneath."
import io, json
from contextlib import redirect_stdout, redirect_stderr
from pathlib import Path
import numpy as np, pandas as pd
import pytest

pytest.importorskip('ipfx', reason="NWB extraction needs the optional extra: pip install -e '.[nwb]'")

from ephys2tx.data import DataError, META_COLS
from ephys2tx.features import FamilyTransform, get_schema
from ephys2tx.nwb import (GOUWENS_WIDTHS, download_dandiset, SUMMARY_FEATURES, extract_file, extract_files, failure_log_path, family_mask,
                          gouwens_table, join_metadata, manifest, parts_dir, read_features, read_state,
                          vector_columns)
from ephys2tx.synthetic import simulate_adex, cell_params, write_synthetic_cohort, write_synthetic_nwb

N_PER_CLASS = 2
NO_LSQ = 'sub-7_ses-70_icephys.nwb'            # short square + ramp only: long-square families absent
CORRUPT, TRUNCATED = 'sub-8_ses-80_icephys.nwb', 'sub-9_ses-90_icephys.nwb'


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    "A jittered cohort (2 fast, 2 adapting), one cell without long squares, a corrupt and a truncated file; one Dask run."
    d = tmp_path_factory.mktemp('nwb')
    man = write_synthetic_cohort(d / 'cohort', n_per_class=N_PER_CLASS, jitter=0.1, random_state=3)
    write_synthetic_nwb(d / 'cohort' / NO_LSQ, 'fast', random_state=11, protocols=('short_square', 'ramp'))
    (d / 'cohort' / CORRUPT).write_bytes(b'\x89HDF\r\n\x1a\n' + b'\0' * 100)
    raw = Path(man.path[0]).read_bytes()
    (d / 'cohort' / TRUNCATED).write_bytes(raw[:len(raw) // 2])
    res = extract_files(d / 'cohort', d / 'out' / 'features.h5', n_workers=2, max_in_flight=3, progress=False)
    return d, man, res


def _by_file(res):
    return {r['file']: r for r in res.records}


def test_table_shapes_and_failure_log(run):
    d, man, res = run
    assert len(res.records) == len(man) + 3 and res.n_extracted == len(man) + 3 and res.n_skipped == 0
    t = res.table
    assert sorted(t.source_id) == sorted(list(man.file) + [NO_LSQ])
    assert list(t.columns[:len(META_COLS)]) == META_COLS
    assert t.shape[1] == len(META_COLS) + sum(GOUWENS_WIDTHS.values()) + len(SUMMARY_FEATURES)
    assert list(t.columns[len(META_COLS):len(META_COLS) + len(vector_columns())]) == vector_columns()
    log = pd.read_csv(failure_log_path(d / 'out' / 'features.h5'))
    assert sorted(log.file) == sorted([CORRUPT, TRUNCATED])
    assert (log.stage == 'open').all() and log.error.str.len().gt(0).all()
    # donor / session IDs come from the DANDI file name
    row = t.set_index('source_id').loc[man.file[0]]
    assert row.donor == man.subject_id[0]


def test_family_masks_absent_not_zero(run):
    d, man, res = run
    t = res.table.set_index('source_id')
    m = family_mask(t)
    assert m.loc[list(man.file)].all().all(), 'a complete recording has all 12 families'
    r = _by_file(res)[NO_LSQ]
    assert r['status'] == 'ok'
    lsq_fams = [f for f in GOUWENS_WIDTHS if not f.startswith('first_ap')]
    assert set(r['absent']) == set(lsq_fams) and all('long_square' in v for v in r['absent'].values())
    assert not m.loc[NO_LSQ, lsq_fams].any() and m.loc[NO_LSQ, ['first_ap_v', 'first_ap_dv']].all()
    ap = t.loc[NO_LSQ, [f'first_ap_v_{i}' for i in range(450)]].to_numpy(float)
    assert np.isfinite(ap[:150]).all() and np.isnan(ap[150:300]).all() and np.isfinite(ap[300:]).all()
    assert np.isnan(t.loc[NO_LSQ, 'rheobase_i']) and np.isfinite(t.loc[NO_LSQ, 'threshold_i_short_square'])


@pytest.fixture(scope='module')
def split(run):
    "Complete cells, one held out per class; the family tensors with statistics fitted on the training rows only."
    d, man, res = run
    t = res.table.set_index('source_id').loc[list(man.file) + [NO_LSQ]].reset_index()
    y = np.r_[man.set_index('file').loc[man.file, 'cell'].to_numpy(), ['fast']]
    test = t.source_id.isin(man.groupby('cell').file.last()).to_numpy()
    ft = FamilyTransform(schema='gouwens').fit(t[~test])
    return t, y, test, ft.transform(t)


def test_family_tensors_carry_the_mask(split):
    t, y, test, T = split
    assert T.values.shape == (len(t), 12, max(GOUWENS_WIDTHS.values()))
    assert [f.width for f in get_schema('gouwens')] == list(GOUWENS_WIDTHS.values())
    np.testing.assert_array_equal(T.fam_mask, family_mask(t).to_numpy())
    assert not T.fam_mask[t.source_id == NO_LSQ].all() and T.fam_mask[t.source_id != NO_LSQ].all()
    assert T.flat().shape == (len(t), sum(GOUWENS_WIDTHS.values())) and np.isfinite(T.flat()).all()


def test_fast_spiking_has_narrow_spikes_and_high_rates(run):
    d, man, res = run
    t = res.table.set_index('source_id')
    cls = dict(zip(man.file, man.cell))
    def mean(fam, f): return np.nanmean(t.loc[f, [f'{fam}_{i}' for i in range(GOUWENS_WIDTHS[fam])]].to_numpy(float))
    for fam, faster_is in [('spiking_width', 'smaller'), ('inst_freq', 'larger'), ('psth', 'larger')]:
        fast = [mean(fam, f) for f in man.file if cls[f] == 'fast']
        slow = [mean(fam, f) for f in man.file if cls[f] == 'adapting']
        assert (max(fast) < min(slow)) if faster_is == 'smaller' else (min(fast) > max(slow)), (fam, fast, slow)
    # the summary features agree: the adapting cell (lower gL) has the higher input resistance
    ri = t.loc[list(man.file), 'input_resistance'].groupby(man.set_index('file').cell).mean()
    assert ri['adapting'] > ri['fast']


def test_small_sklearn_model_learns_the_cell_types(split):
    from sklearn.linear_model import LogisticRegression
    t, y, test, T = split
    X = T.flat()
    clf = LogisticRegression(C=0.1, max_iter=2000).fit(X[~test], y[~test])
    assert list(clf.predict(X[test])) == list(y[test]) and set(y[test]) == {'fast', 'adapting'}


def test_resume_and_formats(run):
    d, man, res = run
    out = d / 'out' / 'features.h5'
    state = read_state(parts_dir(out))
    assert len(state) == len(man) + 3
    again = extract_files(d / 'cohort', out.with_suffix('.npz'), scheduler='sync', progress=False)
    assert (again.n_extracted, again.n_skipped) == (0, len(man) + 3)     # nothing re-extracted: shared state
    for p in [out, out.with_suffix('.npz')]:
        back = read_features(p)
        assert back.source_id.tolist() == res.table.source_id.tolist()
        np.testing.assert_allclose(back[vector_columns()].to_numpy(float), res.table[vector_columns()].to_numpy(float))
        np.testing.assert_allclose(back[SUMMARY_FEATURES].to_numpy(float), res.table[SUMMARY_FEATURES].to_numpy(float))
    retry = extract_files(d / 'cohort', out.with_suffix('.npz'), scheduler='sync', progress=False, retry_failed=True)
    assert retry.n_extracted == 2 and len(retry.failures) == 2


def test_cli_extract_writes_table_and_failure_log(run):
    from ephys2tx.cli import main
    d, man, res = run
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(['extract', '--nwb', str(d / 'cohort'), '--out', str(d / 'out' / 'features.parquet'),
                     '--scheduler', 'sync', '--no-progress']) == 0
    assert f'{len(res.table)} cells, 2 failures' in buf.getvalue()
    assert f'0 extracted now, {len(man) + 3} resumed' in buf.getvalue()      # same stem as the .h5 run: shared state
    assert len(read_features(d / 'out' / 'features.parquet')) == len(res.table)
    assert failure_log_path(d / 'out' / 'features.parquet').is_file()
    err = io.StringIO()
    with redirect_stderr(err):
        assert main(['extract', '--nwb', str(d / 'nothing'), '--out', str(d / 'x.parquet')]) == 2
    assert 'nothing: no such folder or manifest file' in err.getvalue()


def test_extract_file_never_raises(tmp_path):
    r = extract_file(tmp_path / 'sub-1_ses-2_icephys.nwb')
    assert r['status'] == 'failed' and r['stage'] == 'open' and 'no such file' in r['error']
    assert (r['subject_id'], r['session_id']) == ('1', '2')
    with pytest.raises(ValueError, match='must end in one of'):
        extract_files(tmp_path, tmp_path / 'out.csv')


def test_dandi_client_missing_is_a_clear_error(tmp_path):
    import importlib.util
    from ephys2tx.cli import main
    if importlib.util.find_spec('dandi') is not None: pytest.skip('dandi installed: this checks the error without it')
    with pytest.raises(ImportError, match='pip install dandi'):
        download_dandiset('000020', tmp_path)
    err = io.StringIO()
    with redirect_stderr(err):
        assert main(['extract', '--dandiset', '000020', '--download-to', str(tmp_path)]) == 2
    assert 'pip install dandi' in err.getvalue()


def test_manifest_csv_and_errors(tmp_path):
    (tmp_path / 'm.csv').write_text('file,specimen_id\nsub-5_ses-6_icephys.nwb,42\n')
    m = manifest(tmp_path / 'm.csv')
    assert m.loc[0, ['subject_id', 'session_id', 'specimen_id']].tolist() == ['5', '6', 42]
    (tmp_path / 'bad.csv').write_text('name\nx.nwb\n')
    with pytest.raises(DataError, match=r"bad.csv: manifest needs a column 'path' or 'file'"):
        manifest(tmp_path / 'bad.csv')


def test_labels_join_the_data_layer(run, mirror):
    "A record named like a real DANDI 000020 file gets that cell's specimen ID and subclass."
    d, man, res = run
    md = join_metadata('mouse', data_dir=mirror)
    assert md.source_id.str.match(r'^sub-\d+_ses-\d+_icephys\.nwb$').all() and md.source_id.is_unique
    rec = dict(_by_file(res)[man.file[0]]); target = md.iloc[0]
    rec['file'] = target.source_id
    t = gouwens_table([rec], metadata=md)
    assert t.loc[0, 'specimen_id'] == target.specimen_id and t.loc[0, 'subclass'] == target.subclass
    hm = join_metadata('human', data_dir=mirror)
    assert len(hm) > 0 and hm.source_id.str.match(r'^ses-\d+$').all()
    # human: the DANDI session of the file name is the metadata's nwb_id
    h = hm.iloc[0]; ses = h.source_id[4:]
    hrec = dict(rec, file=f'sub-1_ses-{ses}_icephys.nwb', session_id=ses)
    th = gouwens_table([hrec], metadata=hm)
    assert th.loc[0, 'specimen_id'] == h.specimen_id and th.loc[0, 'species'] == 'human'
    assert th.loc[0, 'source_id'] == hrec['file']
    with pytest.raises(DataError, match=r"no NWB labels for species 'rat'"):
        join_metadata('rat', data_dir=mirror)   # a registered cohort without DANDI NWB files


def test_simulator_fast_vs_adapting_rates():
    I = np.zeros((1, 50000)); I[0, 5000:45000] = 250.
    n = {c: int(((v[1:] >= 0) & (v[:-1] < 0)).sum()) for c in ['fast', 'adapting']
         for v in [simulate_adex(I, cell_params(c), noise=0.0)[0]]}
    assert n['fast'] > 2 * n['adapting'] > 0
    with pytest.raises(ValueError, match='unknown synthetic cell'):
        cell_params('bursting')
