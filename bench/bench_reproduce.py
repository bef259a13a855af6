"""Where the time of `ephys2tx reproduce` goes: wall time per stage, and fits per model with their seconds.

    python bench/bench_reproduce.py --out reports_full            # run the full job (5 x 5 folds), then profile it
    python bench/bench_reproduce.py --out reports_out --quick     # the quick job
    python bench/bench_reproduce.py --out reports_full --no-run   # profile a run folder that exists

Stage times are the stages' own records (`<out>/<stage>/stage.json`, written when the stage computed) plus
the report's execution; fits per model come from the stages' result tables (`fit_seconds` of every run).
With fan-out the fits of a stage overlap, so a model's share is of the stage's summed fit time, and the
stage's share is of the total wall time. Writes `bench/results/reproduce_profile[_quick].json` and prints
the README's table.
"""
import argparse, json, os, platform, sys, time
from pathlib import Path
import pandas as pd

HERE = Path(__file__).resolve().parent


def stage_times(out: Path, records: list | None = None) -> pd.DataFrame:
    "Seconds per stage: the records of this run (computation + report) when given, else `stage.json` (computation)."
    rows = []
    if records:
        for r in records: rows.append(dict(stage=r['stage'], seconds=r['seconds'], computed=r['computed']))
    else:
        from ephys2tx.reproduce import STAGES
        for d in (out / n for n in STAGES if (out / n / 'stage.json').is_file()):   # registry order, as they run
            rows.append(dict(stage=d.name, seconds=json.loads((d / 'stage.json').read_text())['seconds'], computed=True))
    t = pd.DataFrame(rows)
    t['share'] = t.seconds / t.seconds.sum()
    return t


def model_fits(out: Path, order: list) -> pd.DataFrame:
    "Fits, summed fit seconds and seconds per fit per stage x species x model; a run a stage read from another is `reused`."
    parts, seen = [], set()
    for name in order:
        f = out / name / 'results.parquet'
        if not f.is_file(): continue
        r = pd.read_parquet(f)
        if 'fit_seconds' not in r.columns: continue
        r = r.assign(stage=name, species=r['species'] if 'species' in r.columns else '')
        ids = r['run_id'] if 'run_id' in r.columns else pd.Series(range(len(r))).astype(str) + name
        r['reused'] = ids.isin(seen).to_numpy(); seen |= set(ids)
        r.loc[r.reused, 'fit_seconds'] = 0.0
        parts.append(r.groupby(['stage', 'species', 'model'], sort=False)
                      .agg(fits=('reused', lambda x: int((~x).sum())), reused=('reused', 'sum'),
                           fit_seconds=('fit_seconds', 'sum')).reset_index())
    if not parts: return pd.DataFrame(columns=['stage', 'species', 'model', 'fits', 'reused', 'fit_seconds', 'seconds_per_fit'])
    t = pd.concat(parts, ignore_index=True)
    t['seconds_per_fit'] = t.fit_seconds / t.fits.where(t.fits > 0)
    t['share_of_stage_fits'] = t.fit_seconds / t.groupby('stage').fit_seconds.transform('sum')
    return t.sort_values(['stage', 'fit_seconds'], ascending=[True, False], key=lambda c: c.map(
        {n: i for i, n in enumerate(order)}) if c.name == 'stage' else c).reset_index(drop=True)


def markdown(stages: pd.DataFrame, fits: pd.DataFrame, wall: float) -> str:
    lines = ['| stage | wall time | share | model (species) | fits | read from an earlier stage | s / fit | share of the stage\'s fit time |',
             '|---|---:|---:|---|---:|---:|---:|---:|']
    for s in stages.itertuples():
        f = fits[fits.stage == s.stage]
        first = True
        for m in f.itertuples() if len(f) else [None]:
            head = f'| {s.stage} | {s.seconds:,.0f} s | {s.share:.0%} |' if first else '| | | |'
            first = False
            if m is None: lines.append(head + ' | | | | |'); continue
            spf = '' if m.fits == 0 else f'{m.seconds_per_fit:.2f}'
            lines.append(head + f' {m.model} ({m.species}) | {m.fits} | {int(m.reused)} | {spf} | {m.share_of_stage_fits:.0%} |')
    lines.append(f'| **total** | **{wall:,.0f} s** | | | | | | |')
    return '\n'.join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default='reports_full', help='run folder')
    ap.add_argument('--quick', action='store_true', help='the quick job (ephys2tx reproduce --quick)')
    ap.add_argument('--no-run', action='store_true', help='profile the run folder as it is, run nothing')
    ap.add_argument('--json', default=None, help='where to write the profile (default bench/results/...)')
    a = ap.parse_args(argv)
    out = Path(a.out).resolve()
    records, wall = None, None
    if not a.no_run:
        from ephys2tx.reproduce import reproduce
        t0 = time.time()
        records = reproduce(out=out, quick=a.quick, progress=False, echo=True)
        wall = time.time() - t0
    stages = stage_times(out, records)
    fits = model_fits(out, list(stages.stage))
    wall = wall if wall is not None else float(stages.seconds.sum())
    prof = dict(command=f"ephys2tx reproduce --out {out.name}" + (' --quick' if a.quick else ''),
                quick=a.quick, wall_seconds=wall, cpus=os.cpu_count(), machine=platform.machine(),
                python=platform.python_version(), stages=stages.to_dict('records'), fits=fits.to_dict('records'),
                measured=time.strftime('%Y-%m-%d %H:%M'))
    dest = Path(a.json) if a.json else HERE / 'results' / ('reproduce_profile_quick.json' if a.quick else 'reproduce_profile.json')
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(prof, indent=1, default=float))
    print(markdown(stages, fits, wall))
    print(f'\nwall time {wall:,.0f} s on {os.cpu_count()} CPUs; profile written to {dest}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
