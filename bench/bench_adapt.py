"""Adaptation on the real shifts of the Allen human cells (acute -> culture, culture -> acute, two donor halves):
unadapted vs lab-only vs adapted with 10, 20 and 40 labelled target cells, 5 repeats x 5 stratified folds.

    python bench/bench_adapt.py [--repeats 5] [--folds 5] [--seed 0] [--n-workers 2] [--out bench/results/adapt_shift]

Writes <out>.parquet (every run), <out>.csv (the table of the README) and <out>.json (settings, seconds)."""
import argparse, json, time, warnings
from pathlib import Path

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--folds', type=int, default=5)
    p.add_argument('--sizes', default='10,20,40')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--n-workers', type=int, default=2)
    p.add_argument('--out', default='bench/results/adapt_shift')
    p.add_argument('--no-progress', action='store_true')
    a = p.parse_args()
    from ephys2tx.adaptbench import SHIFTS, shift_benchmark, shift_table
    warnings.simplefilter('ignore')
    t0 = time.time()
    res = shift_benchmark(SHIFTS, [int(z) for z in a.sizes.split(',')], a.repeats, a.folds, random_state=a.seed,
                          n_workers=a.n_workers, progress=not a.no_progress)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    res.to_parquet(out.with_suffix('.parquet'), index=False)
    tab = shift_table(res)
    tab.to_csv(out.with_suffix('.csv'), index=False)
    out.with_suffix('.json').write_text(json.dumps(dict(vars(a), seconds=round(time.time() - t0, 1),
                                                        runs=len(res)), indent=1))
    print(tab.to_markdown(index=False))
    print(f"\n{len(res)} runs in {time.time() - t0:.0f} s -> {out.with_suffix('.csv')}")

if __name__ == '__main__': main()
