"""What the paired benchmark scripts share: two arms of the same experiment on the same folds, compared per
strategy and size (paired difference, corrected resampled t-test, bootstrap CI, seconds per fit), and written
as JSON (+ .parquet with every run) with the table printed."""
import json, os, platform
from pathlib import Path
import pandas as pd


def paired_table(res: pd.DataFrame, arm: str, new: str, ref: str, sizes) -> pd.DataFrame:
    """One row per strategy and size of `res` (column `arm` names each run's arm): `new` against `ref`.
    `not_worse`: `new` loses less than one SD of `ref`'s macro-F1 and is not worse at p < 0.05."""
    from ephys2tx.evaluation import compare, sizes_list
    rows = []
    for (m, z), g in res.groupby(['model', 'size'], sort=False):
        c = compare(g.assign(model=g[arm]), new, ref)
        fit, sd = g.groupby(arm).fit_seconds.mean(), g.groupby(arm).macro_f1.std()
        mean = g.groupby(arm).macro_f1.mean()
        rows.append({'strategy': m, 'size': z, ref: f"{mean[ref]:.3f} ± {sd[ref]:.3f}",
                     new: f"{mean[new]:.3f} ± {sd[new]:.3f}", 'diff': round(float(c['mean_diff']), 4),
                     'p': round(float(c['p']), 3), 'ci': [round(float(c['ci_low']), 4), round(float(c['ci_high']), 4)],
                     'not_worse': bool(c['mean_diff'] >= -sd[ref] and (c['p'] > 0.05 or c['mean_diff'] > 0)),
                     f'seconds_{ref}': round(float(fit[ref]), 2), f'seconds_{new}': round(float(fit[new]), 2)})
    order = {z: i for i, z in enumerate(sizes_list(sizes))}
    return pd.DataFrame(rows).sort_values(['strategy', 'size'],
                                          key=lambda s: s.map(order) if s.name == 'size' else s)


def write_paired(results, res: pd.DataFrame, table: pd.DataFrame, arm: str, n_workers: int, **info) -> dict:
    "Write `results` (JSON: `info`, the fit seconds per arm, the machine, the table's rows) and its .parquet; print."
    fits = res.groupby(arm).fit_seconds.sum()
    out = dict(**info, fit_seconds_total={k: round(float(v), 1) for k, v in fits.items()}, n_workers=n_workers,
               cpus=os.cpu_count(), machine=platform.machine(), rows=table.to_dict('records'))
    Path(results).parent.mkdir(parents=True, exist_ok=True)
    Path(results).write_text(json.dumps(out, indent=1, default=str))
    res.to_parquet(Path(results).with_suffix('.parquet'), index=False)
    print(table.assign(ci=table.ci.map(lambda c: f"[{c[0]:+.3f}, {c[1]:+.3f}]")).to_markdown(index=False))
    print(json.dumps({k: v for k, v in out.items() if k != 'rows'}, indent=1, default=str))
    return out
