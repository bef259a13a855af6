"""Full-size transfer experiment with timing (a script, not a test).

    python bench/bench_transfer.py --out results/transfer --repeats 5 --folds 5 --n-workers 8 [--grouped]
    python bench/bench_transfer.py --out results/transfer --collect     # tables + figure from finished runs only

Runs (or resumes) `ephys2tx.transfer.run_experiment`, then writes to --out: results.csv, curve.csv, gains.csv,
curve.png, report.md, and bench.json (wall time, pretraining time, per-strategy fit seconds, machine).
With --collect it only assembles what has finished (e.g. after a run was killed at a time limit).
"""
import argparse, json, os, platform, time
from pathlib import Path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default='results/transfer'); p.add_argument('--strategies', default='all')
    p.add_argument('--sizes', default='10,20,40,80,160,all'); p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--folds', type=int, default=5); p.add_argument('--seed', type=int, default=0)
    p.add_argument('--grouped', action='store_true'); p.add_argument('--n-workers', type=int, default=2)
    p.add_argument('--arch', default='bilstm'); p.add_argument('--tiny', action='store_true')
    p.add_argument('--collect', action='store_true', help='only assemble the finished runs')
    a = p.parse_args(argv)
    import matplotlib; matplotlib.use('Agg')
    import pandas as pd
    from ephys2tx import transfer as T
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    cfg = T.TransferConfig(arch=a.arch, **(T.TINY if a.tiny else {}))
    t0 = time.time()
    if a.collect:
        res = T.read_parts(out)
        res = res[(res.seed == a.seed) & (res.grouped == a.grouped)].reset_index(drop=True)
        res['size'] = res['size'].astype(str)
        res.to_csv(out / 'results.csv', index=False)
    else:
        res = T.run_experiment(a.strategies, a.sizes, a.repeats, a.folds, a.seed, a.grouped, out, cfg,
                               n_workers=a.n_workers, progress=False)
    wall = time.time() - t0
    cur, gains = T.curve_table(res), T.gain_table(res)
    cur.to_csv(out / 'curve.csv', index=False); gains.to_csv(out / 'gains.csv', index=False)
    T.plot_curve(res).savefig(out / 'curve.png', dpi=110)
    text = T.verdict_text(gains)
    piv = cur.pivot(index='strategy', columns='size', values='mean ± sd')[T._size_sorted(res['size'])]
    (out / 'report.md').write_text(f"# Transfer experiment ({len(res)} runs)\n\n{piv.to_string()}\n\n{text}\n")
    pre = sorted((out / 'pretrained').glob('*.pkl'))
    bench = dict(runs=len(res), computed_now=len(res.attrs.get('computed', [])), wall_seconds=round(wall, 1),
                 n_workers=a.n_workers, cpus=os.cpu_count(), machine=platform.node(), python=platform.python_version(),
                 fit_seconds_by_strategy=res.groupby('strategy').fit_seconds.mean().round(3).to_dict(),
                 pretrain_seconds=[__import__('pickle').load(open(f, 'rb')).seconds for f in pre])
    (out / 'bench.json').write_text(json.dumps(bench, indent=1))
    print(piv.to_string()); print(text); print(json.dumps(bench, indent=1))


if __name__ == '__main__':
    main()
