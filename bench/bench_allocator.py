#!/usr/bin/env python
"""Fits with glibc's allocator as it comes against `steady_allocator` (freed memory kept for the next fit).

    EPHYS2TX_DATA=/path/to/mirror python bench/bench_allocator.py [--models bilstm,record] [--repeats 3]
    python bench/bench_allocator.py --transfer [--repeats 2]    # two workers, every transfer strategy

Each arm runs in a fresh process, one thread, the arms alternating `--repeats` times: the registered models fitted
on the first of 5 stratified folds of the mouse cells (seed 0) and predicting its test cells. Reports per arm the
mean fit-and-predict seconds of each model, the process's user and system CPU seconds and minor page faults
(`getrusage`), and whether every probability of the steady arm equals the default arm's to the last bit.
Writes bench/results/allocator.json and prints a table. A script, not a test.

`--transfer`: each arm runs the transfer experiment of `ephys2tx reproduce` on one repeat of its 5 folds (every
strategy and size, seed 0, 2 Dask workers as in the full job, the default arm's workers started with
`EPHYS2TX_ALLOCATOR=glibc`): the fits of different strategies share the machine as they do there. Reports per arm
the mean fit seconds of each strategy, the experiment's wall seconds (its mouse pretraining included), and whether
every results row (the scores) is the same in both arms. Writes bench/results/allocator_transfer.json.
"""
import argparse, json, os, platform, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, resource, sys, time, warnings
import numpy as np, torch
warnings.filterwarnings('ignore')
torch.set_num_threads(1)
from threadpoolctl import threadpool_limits
threadpool_limits(1)
from sklearn.model_selection import StratifiedKFold
from ephys2tx.evaluation import load_task, make_model, steady_allocator
steady, names, dest = sys.argv[1] == 'steady', sys.argv[2].split(','), sys.argv[3]
if steady: assert steady_allocator()
t = load_task('mouse')
tr, te = next(StratifiedKFold(5, shuffle=True, random_state=0).split(t.X, t.y))
r0, seconds, proba = resource.getrusage(resource.RUSAGE_SELF), {}, {}
for n in names:
    t0 = time.perf_counter()
    m = make_model(n, t.schema, 0).fit(t.X.iloc[tr], t.y[tr])
    proba[n] = m.predict_proba(t.X.iloc[te])
    seconds[n] = time.perf_counter() - t0
r1 = resource.getrusage(resource.RUSAGE_SELF)
np.savez(dest, **proba)
print(json.dumps(dict(seconds=seconds, user_s=r1.ru_utime - r0.ru_utime, system_s=r1.ru_stime - r0.ru_stime,
                      minor_faults=r1.ru_minflt - r0.ru_minflt)))
"""


TRANSFER_CHILD = r"""
import json, sys, tempfile, time, warnings
warnings.filterwarnings('ignore')
from pathlib import Path
from ephys2tx.evaluation import Executor
from ephys2tx.transfer import TRANSFER_PROTOCOL, transfer_experiment
dest = sys.argv[1]
with tempfile.TemporaryDirectory() as d:
    t0 = time.perf_counter()
    protocol = TRANSFER_PROTOCOL.replace(repeats=1, random_state=0)
    res = transfer_experiment('all', protocol, Executor(n_workers=2, out=d, progress=False), device='cpu')
    wall = time.perf_counter() - t0
res.to_parquet(dest, index=False)
print(json.dumps(dict(wall_s=wall, seconds=res.groupby('model').fit_seconds.mean().to_dict())))
"""
SCORES = ['run_id', 'macro_f1', 'accuracy', 'balanced_accuracy', 'log_loss', 'ece']


def transfer(repeats: int, out: str, argv) -> int:
    "The transfer experiment's fits under both arms, alternating: per strategy seconds, wall, same scores."
    import pandas as pd
    runs, same = [], True
    with tempfile.TemporaryDirectory() as d:
        for rep in range(repeats):
            for arm in ('default', 'steady'):
                dest = Path(d) / f'{arm}{rep}.parquet'
                env = dict(os.environ, EPHYS2TX_ALLOCATOR='glibc' if arm == 'default' else 'steady')
                res = subprocess.run([sys.executable, '-c', TRANSFER_CHILD, str(dest)], capture_output=True, text=True,
                                     check=True, env=env)
                runs.append(dict(arm=arm, repeat=rep, **json.loads(res.stdout.strip().splitlines()[-1])))
                print(f"{arm} {rep}: wall {runs[-1]['wall_s']:.1f} s", flush=True)
            a, b = (pd.read_parquet(Path(d) / f'{arm}{rep}.parquet', columns=SCORES).sort_values('run_id')
                    .reset_index(drop=True) for arm in ('default', 'steady'))
            same &= a.equals(b)
    models = sorted(runs[0]['seconds'])
    rows = [dict(strategy=m, **{arm: round(float(np.mean([r['seconds'][m] for r in runs if r['arm'] == arm])), 3)
                                for arm in ('default', 'steady')}) for m in models]
    for r in rows: r['ratio'] = round(r['steady'] / r['default'], 2) if r['default'] else None
    wall = {arm: round(float(np.mean([r['wall_s'] for r in runs if r['arm'] == arm])), 1)
            for arm in ('default', 'steady')}
    res = dict(command='python bench/bench_allocator.py ' + ' '.join(argv), repeats=repeats,
               identical_scores=bool(same), wall_seconds=wall, per_strategy=rows, runs=runs, cpus=os.cpu_count(),
               machine=platform.machine(),
               python=platform.python_version(), measured=time.strftime('%Y-%m-%d %H:%M'))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(res, indent=1))
    print('| strategy | glibc as it comes, s/fit | steady, s/fit | ratio |\n|---|---:|---:|---:|')
    for r in rows: print(f"| {r['strategy']} | {r['default']} | {r['steady']} | {r['ratio']} |")
    print(f"| experiment wall | {wall['default']} | {wall['steady']} | {wall['steady'] / wall['default']:.2f} |")
    print(f"identical scores: {same}")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--models', default='bilstm,record')
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--transfer', action='store_true', help='the transfer experiment, 1 repeat, 2 workers, per arm')
    ap.add_argument('--out', default=None, help='the JSON to write (default: bench/results/allocator[_transfer].json)')
    a = ap.parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    if a.transfer: return transfer(a.repeats, a.out or str(HERE / 'results' / 'allocator_transfer.json'), argv)
    a.out = a.out or str(HERE / 'results' / 'allocator.json')
    runs, same = [], True
    with tempfile.TemporaryDirectory() as d:
        for rep in range(a.repeats):
            for arm in ('default', 'steady'):
                dest = Path(d) / f'{arm}{rep}.npz'
                res = subprocess.run([sys.executable, '-c', CHILD, arm, a.models, str(dest)], capture_output=True,
                                     text=True, check=True)
                runs.append(dict(arm=arm, repeat=rep, **json.loads(res.stdout.strip().splitlines()[-1])))
                print(f"{arm} {rep}: {runs[-1]}", flush=True)
            with np.load(Path(d) / f'default{rep}.npz') as x, np.load(Path(d) / f'steady{rep}.npz') as y:
                same &= all(x[k].tobytes() == y[k].tobytes() for k in x.files)
    summary = []
    for arm in ('default', 'steady'):
        rs = [r for r in runs if r['arm'] == arm]
        summary.append(dict(arm=arm, **{f'seconds_{n}': round(float(np.mean([r['seconds'][n] for r in rs])), 2)
                                       for n in a.models.split(',')},
                            user_s=round(float(np.mean([r['user_s'] for r in rs])), 2),
                            system_s=round(float(np.mean([r['system_s'] for r in rs])), 2),
                            minor_faults=int(np.mean([r['minor_faults'] for r in rs]))))
    out = dict(command='python bench/bench_allocator.py ' + ' '.join(argv or sys.argv[1:]), models=a.models,
               repeats=a.repeats, identical_probabilities=bool(same), summary=summary, runs=runs,
               cpus=os.cpu_count(), machine=platform.machine(), python=platform.python_version(),
               measured=time.strftime('%Y-%m-%d %H:%M'))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    cols = list(summary[0])
    print('| ' + ' | '.join(cols) + ' |\n|' + '---|' * len(cols))
    for s in summary: print('| ' + ' | '.join(f'{s[c]:,}' if isinstance(s[c], int) else str(s[c]) for c in cols) + ' |')
    print(f"identical probabilities: {same}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
