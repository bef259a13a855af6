"""Bad input by the thousand: `ephys2tx predict` on mangled cell tables and damaged bundles.

The bundles: a BiLSTM of format 2 (the BiLSTM alone) and of format 3, and, of format 3, a forest pipeline (`rf`) and
a soft-voting ensemble of a forest and the BiLSTM (its network's weights in `weights.pt`), on real human cells.

Every case must end in a valid output (one row per input cell, each with a status) or a named error
(exit status 2, `ephys2tx: error: <file>: ...`): never a traceback, never a silent partial output.
`EPHYS2TX_FUZZ_EXAMPLES` sets the number of examples per property (default 60, the `make test` budget);
the count of cases tried and how each ended is printed at the end of the module (run with `-s`).
"""
import io, json, os, shutil, warnings
from collections import Counter
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from hypothesis import HealthCheck, given, settings, strategies as st

from ephys2tx.bilstm import BiLSTMClassifier
from sklearn.ensemble import VotingClassifier
from ephys2tx.bundles import REFERENCE_FILE, save_bundle, trust
from ephys2tx.cli import main as cli_main
from ephys2tx.data import load_cells
from ephys2tx.evaluation import make_model

torch.set_num_threads(1)
N = int(os.environ.get('EPHYS2TX_FUZZ_EXAMPLES', '60'))
FUZZ = settings(max_examples=N, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TALLY = Counter()
trust(VotingClassifier, 'sklearn.utils._bunch.Bunch')     # the ensemble's types, as a chapter of ensembles would
# every file of each damaged bundle: format 2 (BiLSTM), format 3 (forest pipeline; ensemble with a network)
DAMAGEABLE = {'bundle_ref': ('bundle.json', 'transform.json', 'weights.pt', 'manifest.json', REFERENCE_FILE),
              'rf_ref': ('bundle.json', 'model.skops', 'manifest.json', REFERENCE_FILE),
              'vote_ref': ('bundle.json', 'model.skops', 'weights.pt', 'manifest.json', REFERENCE_FILE)}


@pytest.fixture(scope='module')
def setup(mirror, tmp_path_factory):
    d = tmp_path_factory.mktemp('fuzz')
    human = load_cells('human', data_dir=mirror, progress=False)
    y = human['subclass'].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        m = BiLSTMClassifier(schema='human', epochs=2, patience=1, device='cpu', random_state=0).fit(human, y)
        rf = make_model('rf', 'human', n_estimators=20).fit(human, y)
        vote = VotingClassifier(voting='soft', estimators=[
            ('rf', make_model('rf', 'human', n_estimators=20)),
            ('bilstm', make_model('bilstm', 'human', epochs=2, device='cpu'))]).fit(human, y)
    save_bundle(m, d / 'bundle')
    save_bundle(rf, d / 'rf')
    # with their training cells, for the damage cases
    save_bundle(m, d / 'bundle_ref', reference=human, version=2)
    save_bundle(rf, d / 'rf_ref', reference=human)
    save_bundle(vote, d / 'vote_ref', reference=human)
    base = human[['specimen_id'] + m.transform_.flat_feature_names].iloc[:12].reset_index(drop=True)
    yield dict(dir=d, base=base, feats=m.transform_.flat_feature_names, **{b: d / b for b in ['bundle', 'rf',
               *DAMAGEABLE]}, mouse=load_cells('mouse', data_dir=mirror, progress=False).iloc[:8])
    print(f"\nfuzz: {sum(TALLY.values())} cases tried: " + ', '.join(f'{k} {v}' for k, v in sorted(TALLY.items())))


def _predict(bundle, path, out, *extra):
    o, e = io.StringIO(), io.StringIO()
    with redirect_stdout(o), redirect_stderr(e), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        rc = cli_main(['predict', '--model', str(bundle), '--input', str(path), '--out', str(out), *extra])
    return rc, e.getvalue()


def _check(kind, rc, err, path, out, named):
    "The contract: exit 0 with a full output, or exit 2 with a message naming the file; nothing else."
    assert rc in (0, 2), (kind, rc, err)
    assert 'Traceback' not in err, err
    if rc == 2:
        assert 'ephys2tx: error: ' in err and any(str(n) in err for n in named), (kind, err)
        if out.exists():      # written only when no cell could be scored: every row says why
            res = pd.read_csv(out)
            assert len(res) and (res.status != 'ok').all(), (kind, err)
        TALLY[f'{kind}: named error'] += 1
        return None
    res = pd.read_csv(out)
    assert len(res) and res.status.notna().all()
    assert all(s == 'ok' or s.startswith('not predicted: ') for s in res.status)
    ok = res.status == 'ok'
    P = res.loc[ok, [c for c in res.columns if c.startswith('prob_')]].to_numpy(float)
    assert np.allclose(P.sum(1), 1, atol=1e-5) and res.loc[~ok, 'predicted_subclass'].isna().all()
    TALLY[f'{kind}: output'] += 1
    return res


MANGLE = st.sampled_from(['drop', 'rename', 'nan', 'inf', 'string', 'duplicate_id', 'scale', 'blank_rows',
                          'shuffle', 'no_id', 'other_species'])


@FUZZ
@given(ops=st.lists(st.tuples(MANGLE, st.integers(0, 10**6), st.sampled_from([1e3, 1e-3, -1.0, 1e6])),
                    min_size=1, max_size=4),
       allow_missing=st.booleans(), bundle=st.sampled_from(['bundle', 'rf']))
def test_mangled_tables(setup, ops, allow_missing, bundle):
    "Columns dropped or renamed, NaN, inf, strings, duplicate IDs, scaled units, the other species' table."
    df, feats = setup['base'].copy(), setup['feats']
    rng = None
    for op, k, factor in ops:
        rng = np.random.default_rng(k)
        col, row = feats[k % len(feats)], k % max(len(df), 1)
        if not len(df) and op in ('nan', 'inf', 'string', 'duplicate_id'): continue
        if op == 'drop': df = df.drop(columns=list(rng.choice(feats, size=1 + k % 40, replace=False)), errors='ignore')
        elif op == 'rename' and col in df: df = df.rename(columns={col: col.upper() + '_x'})
        elif op == 'nan': df.iloc[row, 1:] = np.nan
        elif op == 'inf' and col in df: df.loc[row, col] = [np.inf, -np.inf][k % 2]
        elif op == 'string' and col in df: df[col] = df[col].astype(object); df.loc[row, col] = 'n/a?'
        elif op == 'duplicate_id' and 'specimen_id' in df: df.loc[df.index[-1], 'specimen_id'] = df['specimen_id'].iloc[0]
        elif op == 'scale' and col in df and pd.api.types.is_numeric_dtype(df[col]): df[col] = df[col] * factor
        elif op == 'blank_rows': df = df.iloc[:k % 3]
        elif op == 'shuffle': df = df.sample(frac=1, random_state=k % 1000).reset_index(drop=True)
        elif op == 'no_id': df = df.drop(columns=['specimen_id'], errors='ignore')
        elif op == 'other_species': df = setup['mouse'].copy()
    path, out = setup['dir'] / 'in.csv', setup['dir'] / 'out.csv'
    out.unlink(missing_ok=True)
    df.to_csv(path, index=False)
    rc, err = _predict(setup[bundle], path, out, *(['--allow-missing'] if allow_missing else []))
    res = _check(f'table ({bundle})', rc, err, path, out, [path])
    if res is not None:
        sent = pd.read_csv(path)
        assert len(res) == len(sent)                                 # one row per input cell, in input order
        if 'specimen_id' in sent:
            assert res.specimen_id.astype(str).tolist() == sent.specimen_id.astype(str).tolist()


@FUZZ
@given(kind=st.sampled_from(['empty', 'header', 'binary', 'truncated', 'text', 'bom']), seed=st.integers(0, 10**6))
def test_unreadable_files(setup, kind, seed):
    "Empty, header-only, binary, truncated and unrelated files."
    rng = np.random.default_rng(seed)
    text = setup['base'].to_csv(index=False)
    data = {'empty': b'', 'header': text.splitlines()[0].encode() + b'\n',
            'binary': rng.integers(0, 256, 1 + seed % 4000, dtype=np.uint8).tobytes(),
            'truncated': text.encode()[:1 + seed % len(text)],
            'text': ('lorem,ipsum\n' + '\n'.join(f'{rng.random()},{rng.integers(9)}' for _ in range(5))).encode(),
            'bom': b'\xef\xbb\xbf' + text.encode()[:seed % len(text)]}[kind]
    path, out = setup['dir'] / f'in_{kind}.csv', setup['dir'] / 'out.csv'
    out.unlink(missing_ok=True)
    path.write_bytes(data)
    rc, err = _predict(setup['bundle'], path, out, '--allow-missing')
    _check(f'file', rc, err, path, out, [path])


@FUZZ
@given(case=st.sampled_from([(b, f) for b, files in DAMAGEABLE.items() for f in files]),
       how=st.sampled_from(['flip', 'truncate', 'delete']), seed=st.integers(0, 10**6))
def test_damaged_bundles(setup, case, how, seed):
    "A byte flipped, a file truncated or deleted, in any file of any bundle (format 2 or 3): always a named error."
    bundle, file = case
    b = setup['dir'] / 'damaged'
    shutil.rmtree(b, ignore_errors=True); shutil.copytree(setup[bundle], b)
    f = b / file
    raw = bytearray(f.read_bytes())
    if how == 'flip': raw[seed % len(raw)] ^= 1 << (seed % 8); f.write_bytes(bytes(raw))
    elif how == 'truncate': f.write_bytes(bytes(raw[:seed % len(raw)]))
    else: f.unlink()
    path, out = setup['dir'] / 'cells.csv', setup['dir'] / 'out.csv'
    out.unlink(missing_ok=True)
    setup['base'].to_csv(path, index=False)
    rc, err = _predict(b, path, out)
    assert rc == 2 and not out.exists(), (bundle, file, how, err)
    _check(f'bundle ({bundle})', rc, err, path, out, [f.name])
