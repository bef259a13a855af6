"""Where the time of `ephys2tx reproduce` goes: wall time per stage, and fits per model with their seconds.

    python bench/bench_reproduce.py --out reports_full            # run the full job (5 x 5 folds), then profile it
    python bench/bench_reproduce.py --out reports_out --quick     # the quick job
    python bench/bench_reproduce.py --out reports_full --no-run   # profile a run folder that exists

Stage times are the run's own records (computation plus the report's execution; with `--no-run`, read from
`<out>/run.log`, where a stage stopped before its end is timed up to its last finished run); fits per model come from the stages' result tables (`fit_seconds` of every run).
With fan-out the fits of a stage overlap, so a model's share is of the stage's summed fit time, and the
stage's share is of the total wall time. A run it makes also records the CPU time of this process and of its
children (the Dask workers, the report kernels), user and system, and their minor page faults (`getrusage`).
Writes `bench/results/reproduce_profile[_quick].json` and prints the README's table.
"""
import argparse, datetime, json, os, platform, re, resource, sys, time
from pathlib import Path
import pandas as pd

HERE = Path(__file__).resolve().parent


_LOG = re.compile(r'^(\S+ \S+) INFO \[(\w+)\] (computing|computed in ([\d.]+) s|report .* in ([\d.]+) s)')


def _stamp(t: str) -> float: return datetime.datetime.strptime(t, '%Y-%m-%d %H:%M:%S').timestamp()


def planned_runs(d: Path) -> int | None:
    "Runs a stage planned, when its `settings.json` says (the transfer stage: strategies x sizes x repeats x folds)."
    f = d / 'settings.json'
    if not f.is_file(): return None
    s = json.loads(f.read_text())
    if not all(k in s for k in ('strategies', 'sizes', 'repeats', 'folds')): return None
    return len(s['strategies']) * len(s['sizes']) * s['repeats'] * s['folds']


def log_times(out: Path) -> pd.DataFrame:
    """Seconds per stage from the run's `run.log` (computation + report), in the order the stages ran.

    A stage that started computing and has no end in the log (the run was stopped) is `complete=False`, timed from
    its start to its last finished run (`parts/*.json`), with the runs done and planned."""
    rows = {}
    for line in (out / 'run.log').read_text().splitlines():
        m = _LOG.match(line)
        if not m: continue
        t, st, what, comp, rep = m.groups()
        r = rows.setdefault(st, dict(stage=st, seconds=0.0, computed=False, complete=False, start=_stamp(t)))
        if comp: r.update(seconds=r['seconds'] + float(comp), computed=True, complete=True)
        elif rep: r['seconds'] += float(rep)
    for r in rows.values():
        d = out / r['stage']
        parts = sorted((d / 'parts').glob('*.json'), key=lambda f: f.stat().st_mtime) if (d / 'parts').is_dir() else []
        if not r['complete'] and parts:
            r.update(seconds=parts[-1].stat().st_mtime - r['start'], computed=True)
        if not r['complete']: r.update(runs_done=len(parts), runs_planned=planned_runs(d))
        del r['start']
    t = pd.DataFrame(list(rows.values()))
    t['share'] = t.seconds / t.seconds.sum()
    return t


def stage_times(out: Path, records: list | None = None) -> pd.DataFrame:
    "Seconds per stage: the records of this run (computation + report) when given, else the run's log."
    if not records: return log_times(out)
    t = pd.DataFrame([dict(stage=r['stage'], seconds=r['seconds'], computed=r['computed'], complete=True) for r in records])
    t['share'] = t.seconds / t.seconds.sum()
    return t


def model_fits(out: Path, order: list) -> pd.DataFrame:
    "Fits, summed fit seconds and seconds per fit per stage x species x model; a run a stage read from another's store is `reused`."
    parts, seen = [], set()
    for name in order:
        f = out / name / 'results.parquet'
        if f.is_file(): r = pd.read_parquet(f)
        elif (out / name / 'parts').is_dir():    # a stage stopped before its table: its finished runs
            r = pd.DataFrame([json.loads(p.read_text()) for p in sorted((out / name / 'parts').glob('*.json'))])
        else: continue
        if r.empty: continue
        if 'fit_seconds' not in r.columns: continue
        r = r.assign(stage=name, species=r['species'] if 'species' in r.columns else '')
        ids = r['run_id'] if 'run_id' in r.columns else pd.Series(range(len(r))).astype(str) + name
        runs = list(zip(ids, r['fit_seconds']))              # a run read from a store keeps its id and its fit time;
        r['reused'] = [k in seen for k in runs]; seen |= set(runs)   # a run fitted again has the id, not the time
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
            note = '' if getattr(s, 'complete', True) is not False else (
                f' (stopped: {int(s.runs_done)} of {int(s.runs_planned)} runs)' if s.runs_planned == s.runs_planned else ' (stopped)')
            head = f'| {s.stage}{note} | {s.seconds:,.0f} s | {s.share:.0%} |' if first else '| | | |'
            first = False
            if m is None: lines.append(head + ' | | | | |'); continue
            spf = '' if m.fits == 0 else f'{m.seconds_per_fit:.2f}'
            lines.append(head + f' {m.model} ({m.species}) | {m.fits} | {int(m.reused)} | {spf} | {m.share_of_stage_fits:.0%} |')
    done = all(getattr(s, 'complete', True) is not False for s in stages.itertuples())
    lines.append(f'| **total**{"" if done else " (so far)"} | **{wall:,.0f} s** | | | | | | |')
    return '\n'.join(lines)


def cpu_usage() -> dict:
    "User and system CPU seconds and minor page faults of this process and its finished children, so far."
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return dict(cpu_user_s=me.ru_utime + kids.ru_utime, cpu_system_s=me.ru_stime + kids.ru_stime,
                minor_faults=me.ru_minflt + kids.ru_minflt)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default='reports_full', help='run folder')
    ap.add_argument('--quick', action='store_true', help='the quick job (ephys2tx reproduce --quick)')
    ap.add_argument('--no-run', action='store_true', help='profile the run folder as it is, run nothing')
    ap.add_argument('--json', default=None, help='where to write the profile (default bench/results/...)')
    a = ap.parse_args(argv)
    out = Path(a.out).resolve()
    records, wall, cpu = None, None, {}
    if not a.no_run:
        from ephys2tx.reproduce import reproduce
        t0, c0 = time.time(), cpu_usage()
        records = reproduce(out=out, quick=a.quick, progress=False, echo=True)
        wall, c1 = time.time() - t0, cpu_usage()
        cpu = {k: round(c1[k] - c0[k], 1) for k in c0}
    stages = stage_times(out, records)
    fits = model_fits(out, list(stages.stage))
    wall = wall if wall is not None else float(stages.seconds.sum())
    prof = dict(command=f"ephys2tx reproduce --out {out.name}" + (' --quick' if a.quick else ''),
                quick=a.quick, complete=bool(stages.complete.all()), wall_seconds=wall, cpus=os.cpu_count(), machine=platform.machine(),
                python=platform.python_version(), **cpu, stages=stages.to_dict('records'), fits=fits.to_dict('records'),
                measured=time.strftime('%Y-%m-%d %H:%M'))
    dest = Path(a.json) if a.json else HERE / 'results' / ('reproduce_profile_quick.json' if a.quick else 'reproduce_profile.json')
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(prof, indent=1, default=float))
    print(markdown(stages, fits, wall))
    print(f'\nwall time {wall:,.0f} s on {os.cpu_count()} CPUs; profile written to {dest}')
    if cpu: print(f"CPU {cpu['cpu_user_s']:,.0f} s user, {cpu['cpu_system_s']:,.0f} s system; "
                  f"{cpu['minor_faults']:,} minor page faults")
    return 0


if __name__ == '__main__':
    sys.exit(main())
