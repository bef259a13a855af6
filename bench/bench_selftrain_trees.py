#!/usr/bin/env python
"""Self-training with fewer trees against the forest of record, on the same test folds (a script, not a test).

    EPHYS2TX_DATA=/path/to/mirror python bench/bench_selftrain_trees.py            # 3 x 5 folds, every size
    python bench/bench_selftrain_trees.py --repeats 1 --folds 3 --sizes 20,all     # a quick look

Self-training refits its forest once per pseudo-labelling round (up to 10), so the forest's size sets the cost of
the two self-training strategies, `selftrain` and `selftrain_mouse`. Both are run with the forest of record
(`--reference` trees) and with a smaller forest (`--trees`) on the same repeated stratified folds and labelled
subsamples of the human cells (`transfer_experiment`, a seed of its own, not the seed of `make reproduce`), and
each pair is compared per strategy and size: paired difference, corrected resampled t-test, bootstrap CI, and
seconds per fit. The rule was fixed before the run: `not_worse` when the smaller forest loses less than one SD of
the reference's macro-F1 and is not worse at p < 0.05, at every size of both strategies.

Writes bench/results/selftrain_trees.json (+ .parquet with every run) and prints the table.
"""
import argparse, time
from pathlib import Path
import pandas as pd

HERE = Path(__file__).resolve().parent
from paired import paired_table, write_paired   # noqa: E402 (bench/ is on sys.path when run as a script)
STRATEGIES = 'selftrain,selftrain_mouse'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default='results/selftrain_trees')
    p.add_argument('--sizes', default='10,20,40,80,160,all')
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--folds', type=int, default=5)
    p.add_argument('--seed', type=int, default=3)
    p.add_argument('--n-workers', type=int, default=2)
    p.add_argument('--reference', type=int, default=300, help='trees of the forest of record')
    p.add_argument('--trees', type=int, default=100, help='trees of the smaller forest')
    p.add_argument('--results', default=str(HERE / 'results' / 'selftrain_trees.json'))
    a = p.parse_args(argv)
    from ephys2tx import transfer as T
    from ephys2tx.evaluation import Executor, sizes_list
    protocol = T.TRANSFER_PROTOCOL.replace(sizes=a.sizes, repeats=a.repeats, folds=a.folds, random_state=a.seed)
    record = T.strategy_settings
    runs, seconds = [], {}
    for name, trees in [('reference', a.reference), ('smaller', a.trees)]:
        def settings(strategy, *args, trees=trees, **kw):   # computed here, shipped to the workers with each run
            out = record(strategy, *args, **kw)
            return out | dict(n_estimators=trees) if strategy in STRATEGIES.split(',') else out
        T.strategy_settings = settings
        t0 = time.time()
        r = T.transfer_experiment(STRATEGIES, protocol,
                                  Executor(n_workers=a.n_workers, progress=False, out=Path(a.out) / name),
                                  device='cpu')
        seconds[name] = round(time.time() - t0, 1)
        runs.append(r.assign(forest=name))
        print(f"{name} ({trees} trees): {len(r)} runs in {seconds[name]:.0f} s", flush=True)
    T.strategy_settings = record
    res = pd.concat(runs, ignore_index=True)
    table = paired_table(res, 'forest', 'smaller', 'reference', a.sizes)
    write_paired(a.results, res, table, 'forest', a.n_workers,
                 command='python bench/bench_selftrain_trees.py ' + ' '.join(argv or []), seed=a.seed,
                 repeats=a.repeats, folds=a.folds, sizes=sizes_list(a.sizes), reference_trees=a.reference,
                 smaller_trees=a.trees, all_not_worse=bool(table.not_worse.all()), wall_seconds=seconds)

if __name__ == '__main__':
    main()
