"""Full-size transfer experiment with timing (a script, not a test).

    python bench/bench_transfer.py --out results/transfer --repeats 5 --folds 5 --n-workers 2 [--grouped]

Runs (or resumes) `ephys2tx.transfer.transfer_experiment` (the experiment core of `ephys2tx.evaluation`),
writes the tables of `ephys2tx transfer` (`write_tables`) and bench.json: wall time, runs computed now,
mean fit seconds per strategy and size, the pretraining time, and the machine.
"""
import argparse, json, os, platform, time
from pathlib import Path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default='results/transfer'); p.add_argument('--strategies', default='all')
    p.add_argument('--sizes', default='10,20,40,80,160,all'); p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--folds', type=int, default=5); p.add_argument('--seed', type=int, default=1)
    p.add_argument('--grouped', action='store_true'); p.add_argument('--n-workers', type=int, default=2)
    p.add_argument('--tiny', action='store_true')
    a = p.parse_args(argv)
    import torch
    from ephys2tx import transfer as T
    from ephys2tx.evaluation import Executor
    out = Path(a.out)
    t0 = time.time()
    protocol = T.TRANSFER_PROTOCOL.replace(sizes=a.sizes, repeats=a.repeats, folds=a.folds, random_state=a.seed,
                                           grouped=a.grouped)
    res = T.transfer_experiment(a.strategies, protocol, Executor(n_workers=a.n_workers, progress=False, out=out),
                                tiny=a.tiny)
    wall = time.time() - t0
    text = T.write_tables(res, out)
    pre = [torch.load(f, weights_only=True).get('seconds') for f in sorted((out / 'pretrained').glob('*.pt'))]
    bench = dict(runs=len(res), computed_now=len(res.attrs.get('computed', [])), wall_seconds=round(wall, 1),
                 n_workers=a.n_workers, cpus=os.cpu_count(), machine=platform.node(), python=platform.python_version(),
                 fit_seconds=res.groupby(['model', 'size']).fit_seconds.mean().round(2).unstack().to_dict('index'),
                 pretrain_seconds=pre)
    (out / 'bench.json').write_text(json.dumps(bench, indent=1, default=str))
    print(T.curve_of(res).to_string()); print(text); print(json.dumps(bench, indent=1, default=str))


if __name__ == '__main__':
    main()
