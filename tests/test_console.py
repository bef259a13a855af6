"""The terminal of a command: expected warnings are counted into the log with one summary line at the end, from this
process and from its Dask workers; every other warning still shows."""
import os, re, subprocess, sys, warnings
from pathlib import Path
import pytest

from ephys2tx.bilstm import BiLSTMClassifier
from ephys2tx.bundles import save_bundle
from ephys2tx.console import quiet_warnings
from ephys2tx.data import impossible_rule, load_cells

ROOT = Path(__file__).resolve().parents[1]
CLIP = "non-positive values of log feature(s) ['{}'] (positive in every training cell) were set to the training minimum"

# `ephys2tx <argv>` through `main`, its predict command raising a warning nobody expects before it runs
SCRIPT = '''
import sys, warnings
import ephys2tx.predictor as b
from ephys2tx.cli import main
predict = b._cli_predict
def noisy(args):
    warnings.warn('a warning nobody expects', RuntimeWarning)
    return predict(args)
b._cli_predict = noisy
sys.exit(main(sys.argv[1:]))
'''


@pytest.fixture(scope='module')
def bundle(tmp_path_factory, mirror):
    "A small human bundle, and a CSV of 20 human cells, 3 with a log feature at 0 (where every training cell is >0)."
    human = load_cells('human', data_dir=mirror, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        m = BiLSTMClassifier(schema='human', epochs=2, patience=1, device='cpu', random_state=0).fit(
            human, human['subclass'].to_numpy())
    d = tmp_path_factory.mktemp('console')
    save_bundle(m, d / 'm')
    cells = human.sample(20, random_state=1)
    feature = next(f for f in m.transform_.log_feature_names_ if impossible_rule(f) is None)   # 0 is possible
    cells.iloc[:3, cells.columns.get_loc(feature)] = 0.
    cells.to_csv(d / 'cells.csv', index=False)
    return d, feature


def test_predict_logs_the_expected_warning_and_shows_the_other(bundle, tmp_path):
    d, feature = bundle
    log = tmp_path / 'logs' / 'ephys2tx.log'
    env = {**os.environ, 'EPHYS2TX_LOG': str(log), 'PYTHONPATH': str(ROOT)}
    env.pop('PYTHONWARNINGS', None)
    r = subprocess.run([sys.executable, '-c', SCRIPT, 'predict', '--model', str(d / 'm'), '--input',
                        str(d / 'cells.csv'), '--out', str(tmp_path / 'p.csv')],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert '20 cells ->' in r.stdout
    assert 'non-positive values' not in r.stderr, r.stderr                     # expected: not on the terminal
    assert 'RuntimeWarning: a warning nobody expects' in r.stderr, r.stderr    # unexpected: shown as usual
    last = r.stderr.strip().splitlines()[-1]
    m = re.fullmatch(rf'(\d+) expected warnings? \(1 kind\) written to {re.escape(str(log))}', last)
    assert m, r.stderr
    text = log.read_text()
    assert f"log feature at or below 0: {m.group(1)} (first at " in text, text
    assert f"x UserWarning: non-positive values of log feature(s) ['{feature}'" in text, text
    assert 'nobody expects' not in text

    # a second command appends to the same log; one without expected warnings adds nothing and prints no summary
    code = 'import sys; from ephys2tx.cli import main; sys.exit(main(["data", "list"]))'
    r2 = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, timeout=120)
    assert r2.returncode == 0 and r2.stderr == '' and log.read_text() == text


def test_dask_workers_record_into_the_run(tmp_path, capfd):
    "A worker started inside the context preloads the hook: its expected warnings join the run's, the others print."
    from dask.distributed import Client, LocalCluster
    before = os.environ.get('DASK_DISTRIBUTED__WORKER__PRELOAD')
    with quiet_warnings(log=tmp_path / 'run.log') as wl:
        with LocalCluster(n_workers=1, processes=True, threads_per_worker=1, dashboard_address=None) as c, \
             Client(c) as client:
            futs = [client.submit(warnings.warn, CLIP.format(f), pure=False) for f in ('sag', 'tau', 'ri')]
            futs.append(client.submit(warnings.warn, 'a worker warning nobody expects', RuntimeWarning, pure=False))
            client.gather(futs)
    assert wl.counts['log feature at or below 0'] == 3, wl.counts
    assert {r['pid'] for r in wl.records if r['kind'] == 'log feature at or below 0'} - {os.getpid()}, wl.records
    err = capfd.readouterr().err
    assert 'non-positive values' not in err and 'a worker warning nobody expects' in err, err
    assert f"written to {tmp_path / 'run.log'}" in err.strip().splitlines()[-1]
    assert "['tau']" in (tmp_path / 'run.log').read_text()
    assert os.environ.get('DASK_DISTRIBUTED__WORKER__PRELOAD') == before      # the run's settings are gone with it
