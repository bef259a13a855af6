#!/usr/bin/env python
"""Fits with glibc's allocator as it comes against `steady_allocator` (freed memory kept for the next fit).

    EPHYS2TX_DATA=/path/to/mirror python bench/bench_allocator.py [--models bilstm,record] [--repeats 3]

Each arm runs in a fresh process, one thread, the arms alternating `--repeats` times: the registered models fitted
on the first of 5 stratified folds of the mouse cells (seed 0) and predicting its test cells. Reports per arm the
mean fit-and-predict seconds of each model, the process's user and system CPU seconds and minor page faults
(`getrusage`), and whether every probability of the steady arm equals the default arm's to the last bit.
Writes bench/results/allocator.json and prints a table. A script, not a test.
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--models', default='bilstm,record')
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--out', default=str(HERE / 'results' / 'allocator.json'))
    a = ap.parse_args(argv)
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
