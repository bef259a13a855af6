"""The multi-machine path: a standalone Dask scheduler and two workers (separate processes, 127.0.0.1 only),
the `ephys2tx transfer` CLI pointed at it, and one worker killed mid-run. The experiment must still finish with
every planned run exactly once."""
import os, shutil, signal, socket, subprocess, sys, time
from pathlib import Path
import pandas as pd
import pytest

from conftest import mirror_path

# Two cheap strategies of the transfer registry (override with $EPHYS2TX_TEST_STRATS).
STRATS = os.environ.get('EPHYS2TX_TEST_STRATS', 'logreg,rf')
SIZES, REPEATS, FOLDS = '20,all', 2, 5
BIN = Path(sys.executable).parent
HOST = '127.0.0.1'


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0)); return s.getsockname()[1]


def _dask_cli():
    "The `dask` console script beside this interpreter, else None."
    p = BIN / 'dask'
    if p.is_file() and os.access(p, os.X_OK): return [str(p)]
    p = shutil.which('dask')
    return [p] if p else None


def _ephys2tx_cli():
    p = BIN / 'ephys2tx'
    return [str(p)] if p.is_file() else [sys.executable, '-m', 'ephys2tx.cli']


def _env():
    env = dict(os.environ, EPHYS2TX_DATA=str(mirror_path()), OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
               OPENBLAS_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    env.pop('DASK_SCHEDULER_ADDRESS', None)
    return env


def _group_alive(pgid: int) -> bool:
    try: os.killpg(pgid, 0); return True
    except ProcessLookupError: return False
    except PermissionError: return True


def _killpg(p: subprocess.Popen, sig=signal.SIGKILL, wait: float = 10):
    """Signal a process and every process it started (it leads its own process group), reap it, and wait for
    the rest of the group (a nanny's worker process) to go; SIGKILL whatever is left after `wait` seconds."""
    if p is None: return
    try: os.killpg(p.pid, sig)
    except ProcessLookupError: pass
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and (p.poll() is None or _group_alive(p.pid)): time.sleep(0.1)
    if p.poll() is None or _group_alive(p.pid):
        try: os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError: pass
    p.wait(timeout=10)
    for _ in range(50):
        if not _group_alive(p.pid): break
        time.sleep(0.1)


@pytest.fixture
def cluster(tmp_path):
    "A scheduler and two single-threaded workers, each its own process group; yields (address, workers, logdir)."
    dask = _dask_cli()
    if dask is None: pytest.skip('the `dask` CLI (distributed) is not installed')
    port = _free_port()
    addr = f'tcp://{HOST}:{port}'
    logs = tmp_path / 'logs'; logs.mkdir()
    procs, env = [], _env()

    def start(name, args):
        f = open(logs / f'{name}.log', 'wb')
        p = subprocess.Popen(dask + args, env=env, cwd=tmp_path, stdout=f, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        f.close(); procs.append(p); return p

    try:
        # --no-dashboard alone still serves HTTP (health/metrics) on 0.0.0.0; pin it to 127.0.0.1, any free port
        start('scheduler', ['scheduler', '--host', HOST, '--port', str(port), '--no-dashboard',
                           '--dashboard-address', f'{HOST}:0'])
        workers = [start(f'worker{i}', ['worker', addr, '--nthreads', '1', '--nworkers', '1', '--no-dashboard',
                                        '--dashboard-address', f'{HOST}:0', '--memory-limit', '0', '--host', HOST, '--name', f'w{i}',
                                        '--local-directory', str(tmp_path / f'dask-w{i}'), '--death-timeout', '60'])
                   for i in range(2)]
        from distributed import Client
        deadline = time.monotonic() + 60
        while True:  # the scheduler may not listen yet
            try:
                with Client(addr, timeout='5s') as c: c.wait_for_workers(2, timeout=max(1, deadline - time.monotonic())); break
            except (OSError, TimeoutError) as e:
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    raise RuntimeError(f'cluster did not come up: {e!r}\n' + _logs(logs)) from e
                time.sleep(0.5)
        yield addr, workers, logs
    finally:
        for p in reversed(procs): _killpg(p, signal.SIGTERM, wait=5)
        for p in procs:
            assert p.poll() is not None
            assert not _group_alive(p.pid), f'processes left in group {p.pid}'


def _logs(logs: Path, tail: int = 3000) -> str:
    return '\n'.join(f'--- {f.name} ---\n{f.read_text(errors="replace")[-tail:]}' for f in sorted(logs.glob('*.log')))


def _parts(out: Path) -> int:
    return len(list((out / 'parts').glob('*.json')))


def test_transfer_survives_worker_kill(cluster, tmp_path, mirror):
    addr, workers, logs = cluster
    strats = STRATS.split(',')
    out = tmp_path / 'out'
    planned = len(strats) * len(SIZES.split(',')) * REPEATS * FOLDS
    cmd = _ephys2tx_cli() + ['transfer', '--strategy', STRATS, '--baseline', strats[0], '--human-sizes', SIZES,
                             '--repeats', str(REPEATS), '--folds', str(FOLDS), '--tiny', '--scheduler', addr,
                             '--out', str(out), '--no-progress']
    t0 = time.monotonic()
    cli_log = open(logs / 'cli.log', 'wb')
    cli = subprocess.Popen(cmd, env=_env(), cwd=tmp_path, stdout=cli_log, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, start_new_session=True)
    cli_log.close()
    try:
        # wait for the first finished run, then kill one worker (nanny and worker process) while runs remain
        deadline = time.monotonic() + 120
        while _parts(out) < 1 and cli.poll() is None and time.monotonic() < deadline: time.sleep(0.05)
        n_at_kill = _parts(out)
        assert cli.poll() is None, f'CLI ended (rc={cli.returncode}) before a worker could be killed\n' + _logs(logs)
        assert 1 <= n_at_kill < planned, f'{n_at_kill} of {planned} runs done when killing; need more runs\n' + _logs(logs)
        # kill the worker that has a run in flight (its runs must be rescheduled on the survivor)
        from distributed import Client
        with Client(addr, timeout='10s') as c:
            names = {a: w['name'] for a, w in c.scheduler_info()['workers'].items()}
            busy = {names[a]: list(k) for a, k in c.processing().items() if k and a in names}
        victim = next((n for n in ('w0', 'w1') if n in busy), 'w0')
        t_kill = time.monotonic() - t0
        _killpg(workers[int(victim[1])], signal.SIGKILL)
        survivor = workers[1 - int(victim[1])]
        print(f'\n[dask-cluster] in flight at kill: {busy}')
        try: rc = cli.wait(timeout=180)
        except subprocess.TimeoutExpired:
            pytest.fail('CLI did not finish within 180 s after the worker kill\n' + _logs(logs))
        total = time.monotonic() - t0
        print(f'[dask-cluster] killed worker {victim} at {t_kill:.1f}s with {n_at_kill}/{planned} parts; '
              f'CLI rc={rc} after {total:.1f}s')
        assert rc == 0, f'CLI failed (rc={rc})\n' + _logs(logs)
        assert busy.get(victim), f'{victim} had no run in flight when killed: {busy}'
        assert survivor.poll() is None, 'the surviving worker died too\n' + _logs(logs)
    finally:
        if cli.poll() is None: _killpg(cli, signal.SIGKILL)

    assert _parts(out) == planned
    res = pd.read_csv(out / 'results.csv')
    assert len(res) == planned, f'{len(res)} rows, planned {planned}'
    name = 'strategy' if 'strategy' in res else 'model'
    key = ['run_id'] if 'run_id' in res else [name, 'size', 'repeat', 'fold']
    assert not res.duplicated(key).any(), res[res.duplicated(key, keep=False)]
    combos = set(zip(res[name], res['size'].astype(str), res['repeat'], res['fold']))
    assert combos == {(s, z, r, f) for s in strats for z in SIZES.split(',') for r in range(REPEATS) for f in range(FOLDS)}
    assert res['macro_f1'].between(0, 1).all()
