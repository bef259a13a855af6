"Loaders, QC and the errors of the data layer, on the mirror and on broken copies of it."
import shutil
import numpy as np, pandas as pd
import pytest
from ephys2tx.data import (DataError, LABEL4, SUBCLASSES, META_COLS, feature_columns, fetch, impossible_values,
                           load_cells, load_human, load_mouse, qc)

MOUSE, HUMAN = 'mouse_gouwens2020', 'human_leedalley2023'


@pytest.fixture
def broken(mirror, tmp_path):
    "A writable copy of the mirror; returns (root, edit) where edit(ds, file, fn) rewrites a CSV via fn(df)."
    root = tmp_path / 'mirror'
    shutil.copytree(mirror, root)
    for p in root.rglob('*'): p.chmod(0o755 if p.is_dir() else 0o644)
    def edit(ds, name, fn):
        p = root / ds / name
        df = pd.read_csv(p, encoding='utf-8-sig', dtype=str, keep_default_na=False)
        fn(df).to_csv(p, index=False)
    return root, edit


def test_tidy_tables(mirror):
    m, h = load_mouse(data_dir=mirror, progress=False), load_human(data_dir=mirror, progress=False)
    for df, sp in [(m, 'mouse'), (h, 'human')]:
        assert list(df.columns[:len(META_COLS)]) == META_COLS
        assert (df.species == sp).all()
        assert set(df.label4.dropna()) == set(LABEL4)
        feats = feature_columns(df)
        assert all(pd.api.types.is_float_dtype(df[c]) for c in feats)
        assert set(df.attrs['units']) == set(feats)
    # mouse Sncg is merged into Vip for the aligned labels; subclass keeps it
    assert (m.loc[m.subclass == 'Sncg', 'label4'] == 'Vip').all()
    assert set(h.condition) == {'acute', 'culture'}
    # the join is by session ID: the NWB name of each row contains the session the metadata gives
    raw = pd.read_csv(mirror / MOUSE / '20200711_patchseq_metadata_mouse.csv')
    sess = raw.set_index('cell_specimen_id').ephys_session_id
    assert all(f'ses-{sess[s]}_' in src for s, src in zip(m.specimen_id[:50], m.source_id[:50]))


def test_qc_accounts_for_every_cell(mirror):
    for load in (load_mouse, load_human):
        df = load(data_dir=mirror, progress=False)
        r = qc(df)
        assert len(r.cells) + len(r.dropped) == len(df)
        assert r.report['cells dropped'].sum() == len(r.dropped)
        assert r.cells.specimen_id.is_unique
        sp = df.species.iloc[0]
        assert set(r.cells.subclass) == set(SUBCLASSES[sp])
        frac = r.cells[feature_columns(r.cells)].isna().mean(axis=1)
        assert (frac <= 0.5).all()
    # a stricter missingness threshold drops more, and says so
    h = load_human(data_dir=mirror, progress=False)
    strict, loose = qc(h, max_missing=0.1), qc(h, max_missing=0.9)
    assert len(strict.cells) < len(loose.cells)
    assert (strict.dropped.reason == 'too many missing features').sum() > (loose.dropped.reason == 'too many missing features').sum()


def test_qc_drops_impossible_values_and_names_them(mirror):
    "Negative input resistances and non-positive upstroke/downstroke ratios of the releases are their own QC reason."
    h = load_human(data_dir=mirror, progress=False)
    r = qc(h)
    d = r.dropped[r.dropped.reason == 'impossible value'].set_index('specimen_id')
    assert {1026542489, 1061737671, 910352585} <= set(d.index)
    assert d.loc[1026542489, 'detail'].startswith('input_resistance = -52.69 (must be >0')
    assert d.loc[1061737671, 'detail'].startswith('input_resistance = -789.4')
    assert 'upstroke_downstroke_ratio_short_square = -0.5016' in d.loc[910352585, 'detail']
    assert (r.cells.input_resistance > 0).all() and (r.cells.upstroke_downstroke_ratio_short_square.dropna() > 0).all()
    assert int(r.report.set_index('reason').loc['impossible value', 'cells dropped']) == len(d)
    m = qc(load_mouse(data_dir=mirror, progress=False))
    assert (m.cells.ri > 0).all() and 744438533 in set(m.dropped.query("reason == 'impossible value'").specimen_id)
    # no cell that passes QC breaks any sign rule, in either species
    assert (impossible_values(r.cells) == '').all() and (impossible_values(m.cells) == '').all()
    # a cell made impossible is dropped with that reason, whatever else it has
    h2 = h.copy(); h2.attrs = h.attrs
    sid = r.cells.specimen_id.iloc[0]
    h2.loc[h2.specimen_id == sid, 'tau'] = -3.0
    r2 = qc(h2)
    assert r2.dropped.set_index('specimen_id').loc[sid, 'detail'].startswith('tau = -3 (must be >0')
    assert len(r2.cells) == len(r.cells) - 1


def test_qc_conflicting_duplicates_are_all_dropped(mirror):
    h = load_human(data_dir=mirror, progress=False)
    h = h[h.specimen_id != 819133824].reset_index(drop=True)  # the release's own duplicate
    dup = h.iloc[[0]].copy(); dup['subclass'] = 'Sst' if h.subclass.iloc[0] != 'Sst' else 'Vip'
    r = qc(pd.concat([h, dup], ignore_index=True).pipe(lambda d: d.__setattr__('attrs', h.attrs) or d))
    d = r.dropped[r.dropped.reason == 'duplicate ID']
    assert len(d) == 2 and (d.specimen_id == h.specimen_id.iloc[0]).all()
    assert h.specimen_id.iloc[0] not in set(r.cells.specimen_id)


def test_missing_file(broken):
    root, _ = broken
    (root / HUMAN / 'LeeDalley_manuscript_metadata_v2.csv').unlink()
    with pytest.raises(DataError, match='LeeDalley_manuscript_metadata_v2.csv: file not found'):
        load_human(data_dir=root, progress=False)


def test_missing_column(broken):
    root, edit = broken
    edit(MOUSE, '20200711_patchseq_metadata_mouse.csv', lambda d: d.rename(columns={'T-type Label': 'ttype'}))
    with pytest.raises(DataError, match=r"20200711_patchseq_metadata_mouse.csv: missing required column\(s\) \['T-type Label'\]"):
        load_mouse(data_dir=root, progress=False, verify=False)


def test_duplicate_ids(broken):
    root, edit = broken
    edit(HUMAN, 'LeeDalley_ephys_fx.csv', lambda d: pd.concat([d, d.iloc[[3]]]))
    with pytest.raises(DataError, match="LeeDalley_ephys_fx.csv: duplicate IDs in column 'specimen_id'"):
        load_human(data_dir=root, progress=False, verify=False)


def test_non_numeric_feature(broken):
    root, edit = broken
    def f(d): d.loc[5, 'tau'] = '12 ms'; return d
    edit(HUMAN, 'LeeDalley_ephys_fx.csv', f)
    with pytest.raises(DataError, match=r"LeeDalley_ephys_fx.csv: column 'tau' holds non-numeric values, e.g. \['12 ms'\]"):
        load_human(data_dir=root, progress=False, verify=False)


def test_unknown_label(broken):
    root, edit = broken
    def f(d): d.loc[0, 'Revised_subclass_label'] = 'SNCG'; return d
    edit(HUMAN, 'LeeDalley_manuscript_metadata_v2.csv', f)
    with pytest.raises(DataError, match=r"LeeDalley_manuscript_metadata_v2.csv: column 'Revised_subclass_label' has unknown label\(s\) \['SNCG'\]"):
        load_human(data_dir=root, progress=False, verify=False)
    # mouse: the subclass is the first word of the t-type; an unknown first word is named
    def g(d): d.loc[0, 'T-type Label'] = 'Foo Bar1'; return d
    edit(MOUSE, '20200711_patchseq_metadata_mouse.csv', g)
    with pytest.raises(DataError, match=r"20200711_patchseq_metadata_mouse.csv: column 'T-type Label' has unknown subclass\(es\) \['Foo'\]"):
        load_mouse(data_dir=root, progress=False, verify=False)


def test_modified_mirror_fails_checksum_unless_verify_off(broken):
    root, edit = broken
    edit(HUMAN, 'DataS1_Donor_table.csv', lambda d: d)
    with pytest.raises(DataError, match='SHA-256 mismatch'):
        load_human(data_dir=root, progress=False)
    assert len(load_human(data_dir=root, progress=False, verify=False)) == 705


def test_load_cells_return_qc(mirror):
    cells, res = load_cells('human', data_dir=mirror, progress=False, return_qc=True)
    assert cells.equals(res.cells) and len(cells) == len(load_cells('human', data_dir=mirror, progress=False))
    with pytest.raises(DataError, match=r"unknown species 'rat'; choose from \["):
        load_cells('rat', data_dir=mirror)
    with pytest.raises(DataError, match="unknown dataset 'rat_2099'"):
        fetch('rat_2099', data_dir=mirror)


def test_data_summary_cli_lists_the_impossible_values(mirror, capsys):
    from ephys2tx.cli import main
    assert main(['--data-dir', str(mirror), 'data', 'summary']) == 0
    out = capsys.readouterr().out
    block = out[out.index('Cells dropped for an impossible value'):]
    assert '1026542489' in block and 'input_resistance = -52.69' in block and '744438533' in block
    assert 'impossible value' in out[:out.index('Cells dropped for an impossible value')]   # a row of the QC report
