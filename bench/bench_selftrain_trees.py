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
import argparse, json, os, platform, time
from pathlib import Path
import pandas as pd

HERE = Path(__file__).resolve().parent
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
    from ephys2tx.evaluation import compare, sizes_list
    record = T.strategy_params
    runs, seconds = [], {}
    for name, trees in [('reference', a.reference), ('smaller', a.trees)]:
        def params(*args, trees=trees, **kw):   # computed here, shipped to the workers with each run
            out = record(*args, **kw)
            for s in STRATEGIES.split(','): out.setdefault(s, {})['n_estimators'] = trees
            return out
        T.strategy_params = params
        t0 = time.time()
        r = T.transfer_experiment(STRATEGIES, a.sizes, a.repeats, a.folds, a.seed, out=Path(a.out) / name,
                                  n_workers=a.n_workers, progress=False, device='cpu')
        seconds[name] = round(time.time() - t0, 1)
        runs.append(r.assign(forest=name))
        print(f"{name} ({trees} trees): {len(r)} runs in {seconds[name]:.0f} s", flush=True)
    T.strategy_params = record
    res = pd.concat(runs, ignore_index=True)
    rows = []
    for (m, z), g in res.groupby(['model', 'size'], sort=False):
        c = compare(g.assign(model=g.forest), 'smaller', 'reference')
        fit = g.groupby('forest').fit_seconds.mean()
        sd = g.groupby('forest').macro_f1.std()
        mean = g.groupby('forest').macro_f1.mean()
        rows.append(dict(strategy=m, size=z, reference=f"{mean['reference']:.3f} ± {sd['reference']:.3f}",
                         smaller=f"{mean['smaller']:.3f} ± {sd['smaller']:.3f}",
                         diff=round(float(c['mean_diff']), 4), p=round(float(c['p']), 3),
                         ci=[round(float(c['ci_low']), 4), round(float(c['ci_high']), 4)],
                         not_worse=bool(c['mean_diff'] >= -sd['reference'] and (c['p'] > 0.05 or c['mean_diff'] > 0)),
                         seconds_reference=round(float(fit['reference']), 2),
                         seconds_smaller=round(float(fit['smaller']), 2)))
    order = {z: i for i, z in enumerate(sizes_list(a.sizes))}
    table = pd.DataFrame(rows).sort_values(['strategy', 'size'], key=lambda s: s.map(order) if s.name == 'size' else s)
    fits = res.groupby('forest').fit_seconds.sum()
    out = dict(command='python bench/bench_selftrain_trees.py ' + ' '.join(argv or []), seed=a.seed,
               repeats=a.repeats, folds=a.folds, sizes=sizes_list(a.sizes), reference_trees=a.reference,
               smaller_trees=a.trees, all_not_worse=bool(table.not_worse.all()), wall_seconds=seconds,
               fit_seconds_total={k: round(float(v), 1) for k, v in fits.items()},
               n_workers=a.n_workers, cpus=os.cpu_count(), machine=platform.machine(), rows=table.to_dict('records'))
    Path(a.results).parent.mkdir(parents=True, exist_ok=True)
    Path(a.results).write_text(json.dumps(out, indent=1, default=str))
    res.to_parquet(Path(a.results).with_suffix('.parquet'), index=False)
    md = table.assign(ci=table.ci.map(lambda c: f"[{c[0]:+.3f}, {c[1]:+.3f}]"))
    print(md.to_markdown(index=False))
    print(json.dumps({k: v for k, v in out.items() if k != 'rows'}, indent=1, default=str))


if __name__ == '__main__':
    main()
