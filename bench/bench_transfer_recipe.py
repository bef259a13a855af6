#!/usr/bin/env python
"""The transfer networks' recipe against the earlier one, on the same test folds (a script, not a test).

    EPHYS2TX_DATA=/path/to/mirror python bench/bench_transfer_recipe.py            # 3 x 5 folds, every size
    python bench/bench_transfer_recipe.py --repeats 1 --folds 3 --sizes 20,all     # a quick look

The recipe of record, `ephys2tx.transfer.TRANSFER_RECIPE` (hidden 32, batches of 256, learning rates x 3), is the
BiLSTM chapter's recipe, which that chapter chose by inner validation; it was fixed before this check ran, and
no test fold of this script chose anything. Every neural strategy (and `rf_mouse`, which reads the zero-shot
network) is run with `EARLIER_TRANSFER_RECIPE` (hidden 128, batches of 64) and with the recipe of record on the
same repeated stratified folds and labelled subsamples of the human cells (`transfer_experiment`, its own seed,
not the seed of `make reproduce`), and each pair is compared per strategy and size: paired difference, corrected
resampled t-test, bootstrap CI, and seconds per fit. `not_worse`: the recipe loses less than one SD of the
earlier recipe's macro-F1 and is not worse at p < 0.05.

Writes bench/results/transfer_recipe.json (+ .parquet with every run) and prints the README's table.
"""
import argparse, time
from pathlib import Path
import pandas as pd

HERE = Path(__file__).resolve().parent
from paired import paired_table, write_paired   # noqa: E402 (bench/ is on sys.path when run as a script)
STRATEGIES = 'nn_human,nn_zeroshot,nn_finetune,nn_joint,nn_dann,rf_mouse'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default='results/transfer_recipe')
    p.add_argument('--sizes', default='10,20,40,80,160,all')
    p.add_argument('--repeats', type=int, default=3); p.add_argument('--folds', type=int, default=5)
    p.add_argument('--seed', type=int, default=2); p.add_argument('--n-workers', type=int, default=2)
    p.add_argument('--results', default=str(HERE / 'results' / 'transfer_recipe.json'))
    a = p.parse_args(argv)
    from ephys2tx import transfer as T
    from ephys2tx.evaluation import Executor, sizes_list
    protocol = T.TRANSFER_PROTOCOL.replace(sizes=a.sizes, repeats=a.repeats, folds=a.folds, random_state=a.seed)
    runs, seconds = [], {}
    for name, recipe in [('earlier', T.EARLIER_TRANSFER_RECIPE), ('recipe', T.TRANSFER_RECIPE)]:
        t0 = time.time()
        r = T.transfer_experiment(STRATEGIES, protocol,
                                  Executor(n_workers=a.n_workers, progress=False, out=Path(a.out) / name),
                                  recipe=recipe, device='cpu')
        seconds[name] = round(time.time() - t0, 1)
        runs.append(r.assign(recipe=name))
        print(f"{name}: {len(r)} runs in {seconds[name]:.0f} s", flush=True)
    res = pd.concat(runs, ignore_index=True)
    table = paired_table(res, 'recipe', 'recipe', 'earlier', a.sizes)
    write_paired(a.results, res, table, 'recipe', a.n_workers,
                 command='python bench/bench_transfer_recipe.py ' + ' '.join(argv or []), seed=a.seed,
                 repeats=a.repeats, folds=a.folds, sizes=sizes_list(a.sizes), earlier=T.EARLIER_TRANSFER_RECIPE,
                 recipe=T.TRANSFER_RECIPE, wall_seconds=seconds)

if __name__ == '__main__':
    main()
