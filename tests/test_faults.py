"""Faults on disk and in flight: a damaged stage output is recomputed, not read; a killed `transfer` or
`reproduce` finishes only the missing work when it is run again."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pandas as pd
import pytest
import ephys2tx.reproduce as R

CLI = [sys.executable, '-c', 'import sys; from ephys2tx.cli import main; sys.exit(main())']


def _env():
    return dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', PYTHONWARNINGS='ignore')


def _parts(folder: Path) -> dict:
    "Finished runs under `folder` (any depth): part file -> modification time."
    return {p: p.stat().st_mtime_ns for p in folder.rglob('parts/*.json')}


def _kill_when(cmd, folder: Path, n: int, timeout: float = 240) -> dict:
    "Start `cmd`, SIGKILL it (and its process group) once `folder` holds `n` finished runs; the runs at that moment."
    p = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    t0 = time.monotonic()
    try:
        while len(_parts(folder)) < n:
            if p.poll() is not None:
                pytest.fail(f'the command ended (rc={p.returncode}) before {n} runs were done: {p.stderr.read()[-2000:]}')
            if time.monotonic() - t0 > timeout: pytest.fail(f'fewer than {n} runs after {timeout} s')
            time.sleep(0.2)
    finally:
        if p.poll() is None: os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    return _parts(folder)


def test_damaged_stage_output_is_computed_again(tmp_path, mirror):
    "A cached stage's table truncated on disk, then its stage.json: each time the stage runs again, never reads it."
    out = tmp_path / 'run'
    kw = dict(out=out, quick=True, stages='data', data_dir=mirror, progress=False, echo=False)
    R.reproduce(**kw)
    table = out / 'data' / 'class_counts.csv'
    good = table.read_bytes()
    table.write_bytes(good[:len(good) // 2])
    recs = R.reproduce(**kw)
    assert recs[0]['status'] == 'computed' and table.read_bytes() == good
    assert 'class_counts.csv absent or changed since the stage wrote it' in (out / 'run.log').read_text()
    (out / 'data' / 'stage.json').write_text('{"key": ')
    assert R.reproduce(**kw)[0]['status'] == 'computed'
    assert R.reproduce(**kw)[0]['status'] == 'cached'


def test_killed_transfer_finishes_only_the_missing_runs(tmp_path, mirror):
    out = tmp_path / 'exp'
    cmd = CLI + ['--data-dir', str(mirror), 'transfer', '--strategy', 'logreg,rf', '--human-sizes', '20,all',
                 '--repeats', '1', '--folds', '3', '--tiny', '--scheduler', 'sync', '--out', str(out), '--no-progress',
                 '--device', 'cpu']
    before = _kill_when(cmd, out, 4)
    assert 4 <= len(before) < 18 and not (out / 'results.csv').exists()
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    after = _parts(out)
    assert len(after) == 3 * 2 * 3                                  # best_human, logreg, rf x sizes x folds
    assert all(after[p] == t for p, t in before.items())                # finished runs were not fitted again
    assert len(pd.read_csv(out / 'results.csv')) == len(after)


def test_killed_reproduce_resumes_its_stage(tmp_path, mirror):
    out = tmp_path / 'run'
    # the Gouwens stage (a forest on sparse-PCA features, 3 x 2 folds): the cheapest stage that fits into the shared
    # store of runs, the store every model stage reads and writes
    cmd = CLI + ['--data-dir', str(mirror), 'reproduce', '--quick', '--stages', 'data,gouwens', '--repeats', '3',
                 '--folds', '2', '--n-workers', '1', '--out', str(out), '--no-progress', '--device', 'cpu']
    before = _kill_when(cmd, out / '_runs', 3)
    assert not (out / 'gouwens' / 'stage.json').exists()
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    log = (out / 'run.log').read_text()
    assert 'resuming an interrupted run with the same key' in log and '[data] cached' in log
    after = _parts(out / '_runs')
    assert all(after[p] == t for p, t in before.items())                # finished runs were not fitted again
    read = sum(int(n) for n in __import__('re').findall(r'(\d+) read from the shared run store', log.split('resuming')[-1]))
    assert read >= len(before)
    res = pd.read_parquet(out / 'gouwens' / 'results.parquet')
    assert len(res) == len(after) == 6 and json.loads((out / 'gouwens' / 'stage.json').read_text())['sha256']
