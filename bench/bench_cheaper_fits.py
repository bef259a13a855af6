#!/usr/bin/env python
"""Cheaper recipes for the fits that dominate `make reproduce`, each checked against the recipe of record on the
same test folds with the paired rule (a script, not a test).

    EPHYS2TX_DATA=/path/to/mirror python bench/bench_cheaper_fits.py                  # both parts, fresh seeds
    python bench/bench_cheaper_fits.py --part record --species human --repeats 1 --folds 3 --out /tmp/c.json

Three parts, each with seeds used by no earlier check (record 21, transfer 22, forest 31 and 32):

- `record`: the model of record (`CalibratedVote`) with its candidates' fits on the inner folds (which only set
  the vote's weights, calibration and set thresholds) at a smaller budget, on the same 5 x 5 stratified folds of
  each species. Arms: `record` (every inner fit at the candidate's own settings), `inner_rf` (the forest of the
  inner folds with 100 trees instead of 500), `inner_small` (that, and gradient boosting with 100 rounds at twice
  the learning rate instead of 200). The members, refitted on all training cells, keep their own settings.
- `transfer`: on the same 3 x 5 stratified folds and labelled subsamples of the human cells at every size
  (`transfer_experiment`): `reference` (the recipes of record) against `cheaper`: `best_human` and `blend_mix`
  with `inner_small` on their inner folds, `selftrain` and `selftrain_mouse` with a forest of 100 trees instead of
  300, `nn_joint` and `nn_dann` with 30 epochs of joint training instead of 60; and `inner_rf` (`best_human`,
  `blend_mix` with the smaller inner forest alone). A second run (`--part transfer --strategies
  nn_human,nn_finetune,rf_mouse --transfer-seed 23`) checks `nn_human` and `nn_finetune` with 30 epochs after the
  warm-up instead of 60 and `rf_mouse` with 200 trees instead of 500. A third (`--part transfer --strategies
  nn_joint,nn_dann --joint-epochs 45 --transfer-seed 24`) checks the joint networks with 45 joint epochs, a fourth
  (`--part transfer --strategies nn_joint,nn_dann --source-batch 128 --transfer-seed 25`) with all 60 epochs but
  128 mouse cells (and 128 unlabelled human cells) a step instead of 256: a cheaper epoch rather than fewer.
- `forest` (`--part forest`) halves the forest of `rf` and `rf_spca` (250 trees instead of 500; `FOREST`): `rf`,
  `rf_spca` and the model of record (whose forest member is `rf`) on the same 5 x 5 stratified folds of each
  species, then `rf`, `best_human` and `blend_mix` (whose refit may be `rf`) on 3 x 5 folds and labelled
  subsamples at every size. Adopted for `rf` where `rf` and the model of record pass on both species and the
  three strategies at every size; for `rf_spca` where it passes on both species.

The rule, fixed before the run: a cheaper arm passes where its mean macro-F1 loses less than one SD of the
reference's and the paired difference is not significantly negative (corrected resampled t-test p > 0.05, or a
positive difference); for the model of record, log-loss must pass the same rule the other way (a rise of less
than one SD, not significantly higher). A recipe is adopted where it passes everywhere it applies: the inner-fold
budget if the arm passes on both species for the record and at every size for `best_human` and `blend_mix` (the
cheapest such arm); each self-training forest and each joint network per strategy, at every size.

Writes bench/results/cheaper_fits.json (+ cheaper_fits_record.parquet, cheaper_fits_transfer.parquet,
cheaper_fits_forest.parquet, cheaper_fits_forest_transfer.parquet: every run)
and prints the tables.
"""
import argparse, json, os, platform, sys, tempfile, time, warnings
from pathlib import Path
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from paired import paired_table   # noqa: E402

FOREST = dict(n_estimators=250)   # the cheaper forest of `rf` and `rf_spca` (their recipe of record: 500 trees)
INNER = {'record': {}, 'inner_rf': {'rf': dict(n_estimators=100)},
         'inner_small': {'rf': dict(n_estimators=100), 'hgb': dict(max_iter=100, learning_rate=0.2)}}
STRATEGIES = 'best_human,blend_mix,selftrain,selftrain_mouse,nn_joint,nn_dann'
REFERENCE = dict(selftrain=dict(n_estimators=300), selftrain_mouse=dict(n_estimators=300),
                 nn_joint=dict(epochs=60, source_batch_size=256), nn_dann=dict(epochs=60, source_batch_size=256),
                 nn_human=dict(epochs=60), nn_finetune=dict(epochs=60), rf_mouse=dict(n_estimators=500))
CHEAPER = dict(selftrain=dict(n_estimators=100), selftrain_mouse=dict(n_estimators=100),
               nn_joint=dict(epochs=30, source_batch_size=256), nn_dann=dict(epochs=30, source_batch_size=256),
               nn_human=dict(epochs=30), nn_finetune=dict(epochs=30), rf_mouse=dict(n_estimators=200))


def _rule(c: dict, sd: float, lower_is_better: bool = False) -> bool:
    "The paired rule on one comparison `c` (`compare`: new - reference), `sd` the reference's SD."
    d = -c['mean_diff'] if lower_is_better else c['mean_diff']
    return bool(d >= -sd and (c['p'] > 0.05 or d > 0))


def _row(r, new, ref, log_loss: bool) -> dict:
    "One paired comparison of `new` against `ref` in results `r` (macro-F1; and log-loss where `log_loss`)."
    from ephys2tx.evaluation import compare
    g = r.groupby('model')
    f1 = compare(r, new, ref)
    out = dict(model=ref, folds=int(f1['n_pairs']),
               reference=f"{g.macro_f1.mean()[ref]:.3f} ± {g.macro_f1.std()[ref]:.3f}",
               cheaper=f"{g.macro_f1.mean()[new]:.3f} ± {g.macro_f1.std()[new]:.3f}", diff=float(f1['mean_diff']),
               p=float(f1['p']), ci=[float(f1['ci_low']), float(f1['ci_high'])],
               fit_s=[float(g.fit_seconds.mean()[ref]), float(g.fit_seconds.mean()[new])],
               passes=_rule(f1, g.macro_f1.std()[ref]))
    if log_loss:
        ll = compare(r, new, ref, metric='log_loss')
        out |= dict(log_loss_reference=f"{g.log_loss.mean()[ref]:.3f} ± {g.log_loss.std()[ref]:.3f}",
                    log_loss_cheaper=f"{g.log_loss.mean()[new]:.3f} ± {g.log_loss.std()[new]:.3f}",
                    log_loss_diff=float(ll['mean_diff']), log_loss_p=float(ll['p']),
                    passes=out['passes'] and _rule(ll, g.log_loss.std()[ref], lower_is_better=True))
    return out


def record_part(species, repeats, folds, seed, n_jobs, progress, store) -> tuple:
    "The record's arms on the same folds of each species: (runs, one row per species x arm)."
    from ephys2tx.evaluation import Executor, Protocol, load_task, make_model, run_experiment
    runs, rows = [], []
    for sp in species:
        t = load_task(sp)
        models = {arm: make_model('record', t.schema, inner_params=kw) for arm, kw in INNER.items()}
        r = run_experiment(t, models, Protocol(repeats=repeats, folds=folds, random_state=seed),
                           Executor(n_workers=n_jobs, progress=progress, out=store / sp))
        runs.append(r)
        g = r.groupby('model')
        for arm in INNER:
            if arm == 'record': continue
            rows.append(dict(species=sp, arm=arm) | _row(r, arm, 'record', log_loss=True) | dict(
                coverage=f"{g.coverage.mean()['record']:.3f} → {g.coverage.mean()[arm]:.3f}",
                set_size=f"{g.set_size.mean()['record']:.2f} → {g.set_size.mean()[arm]:.2f}"))
            print(rows[-1], flush=True)
    return pd.concat(runs, ignore_index=True), rows


def forest_part(species, repeats, folds, seed, n_jobs, progress, store) -> tuple:
    """`rf`, `rf_spca` and the model of record (whose forest member is `rf`) with forests of `FOREST` against their
    recipe of record, on the same folds of each species: (runs, one row per species x model)."""
    from ephys2tx.evaluation import Executor, Protocol, load_task, model_factory, run_experiment
    runs, rows = [], []
    for sp in species:
        t = load_task(sp)
        models = {'rf': model_factory('rf', t.schema), 'rf_cheap': model_factory('rf', t.schema, **FOREST),
                  'rf_spca': model_factory('rf_spca', t.schema),
                  'rf_spca_cheap': model_factory('rf_spca', t.schema, **FOREST),
                  'record': model_factory('record', t.schema),
                  'record_cheap': model_factory('record', t.schema, params={'rf': dict(FOREST)})}
        r = run_experiment(t, models, Protocol(repeats=repeats, folds=folds, random_state=seed),
                           Executor(n_workers=n_jobs, progress=progress, out=store / sp))
        runs.append(r)
        for m in ('rf', 'rf_spca', 'record'):
            rows.append(dict(species=sp) | _row(r, f'{m}_cheap', m, log_loss=m == 'record'))
            print(rows[-1], flush=True)
    return pd.concat(runs, ignore_index=True), rows


def forest_transfer(sizes, repeats, folds, seed, n_workers, store) -> tuple:
    "`rf`, `best_human` and `blend_mix` with the cheaper forest `FOREST` against the recipe of record, same folds."
    from ephys2tx import transfer as T
    def cheaper(s):
        if s == 'rf': return dict(FOREST)
        if s == 'best_human': return dict(params={'rf': dict(FOREST)})
        if s == 'blend_mix': return dict(target_expert=T.BestOfInnerCV(params={'rf': dict(FOREST)}))
        return {}
    protocol = T.TRANSFER_PROTOCOL.replace(sizes=sizes, repeats=repeats, folds=folds, random_state=seed)
    strategies = 'rf,best_human,blend_mix'
    res = pd.concat([transfer_arm('reference', strategies, lambda s: {}, protocol, n_workers, store),
                     transfer_arm('cheaper', strategies, cheaper, protocol, n_workers, store)], ignore_index=True)
    return res, paired_table(res, 'arm', 'cheaper', 'reference', sizes)


def one_fit(inner: dict, seed: int) -> float:
    "Seconds to fit the record with inner settings `inner` on all QC-passed mouse cells, alone."
    from ephys2tx.evaluation import load_task, make_model
    t = load_task('mouse')
    t0 = time.perf_counter()
    make_model('record', 'mouse', random_state=seed, inner_params=inner).fit(t.X, t.y)
    return time.perf_counter() - t0


def transfer_arm(name, strategies, settings_of, protocol, n_workers, store) -> pd.DataFrame:
    "One arm of the transfer part: the experiment with `settings_of(strategy)` over each strategy's settings."
    from ephys2tx import transfer as T
    from ephys2tx.evaluation import Executor
    record = T.strategy_settings
    def settings(strategy, *args, **kw):   # computed here, shipped to the workers with each run
        return record(strategy, *args, **kw) | settings_of(strategy)
    T.strategy_settings = settings
    try:
        t0 = time.time()
        r = T.transfer_experiment(strategies, protocol, Executor(n_workers=n_workers, progress=False, out=store / name),
                                  device='cpu')
    finally:
        T.strategy_settings = record
    print(f"{name}: {len(r)} runs in {time.time() - t0:.0f} s", flush=True)
    return r.assign(arm=name)


def transfer_part(strategies, sizes, repeats, folds, seed, n_workers, store) -> tuple:
    "The transfer arms on the same folds and subsamples: (runs, paired rows of each cheaper arm)."
    from ephys2tx import transfer as T
    def with_inner(inner, other):
        def of(s):
            if s == 'best_human': return dict(inner_params=inner)
            if s == 'blend_mix': return dict(target_expert=T.BestOfInnerCV(inner_params=inner))
            return other.get(s, {})
        return of
    protocol = T.TRANSFER_PROTOCOL.replace(sizes=sizes, repeats=repeats, folds=folds, random_state=seed)
    runs = [transfer_arm('reference', strategies, with_inner({}, REFERENCE), protocol, n_workers, store),
            transfer_arm('cheaper', strategies, with_inner(INNER['inner_small'], CHEAPER), protocol, n_workers, store)]
    if 'best_human' in strategies.split(','):
        runs.append(transfer_arm('inner_rf', 'best_human,blend_mix', with_inner(INNER['inner_rf'], {}), protocol,
                                 n_workers, store))
    res = pd.concat(runs, ignore_index=True)
    tables = []
    for arm in res.arm.unique()[1:]:
        sub = res[res.arm.isin(['reference', arm]) & res.model.isin(res[res.arm == arm].model.unique())]
        tables.append(paired_table(sub, 'arm', arm, 'reference', sizes)
                      .rename(columns={arm: 'cheaper', f'seconds_{arm}': 'seconds_cheaper'}).assign(arm=arm))
    return res, pd.concat(tables, ignore_index=True)


def adopted(record_rows, transfer_rows) -> dict:
    "What the rule adopts: the inner-fold budget (or none), and per strategy its cheaper setting (True/False)."
    def ok(arm, s):
        rows = transfer_rows[(transfer_rows.arm == arm) & (transfer_rows.strategy == s)]
        return bool(len(rows) and rows.not_worse.all())
    arms = {'inner_small': 'cheaper', 'inner_rf': 'inner_rf'}   # the transfer arm of each inner budget
    inner = [arm for arm in arms if record_rows and all(r['passes'] for r in record_rows if r['arm'] == arm)
             and (transfer_rows is None or (ok(arms[arm], 'best_human') and ok(arms[arm], 'blend_mix')))]
    out = dict(inner=inner[0] if inner else None) if record_rows else {}
    if transfer_rows is not None:
        out |= {s: ok('cheaper', s) for s in CHEAPER if s in set(transfer_rows.strategy)}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--part', default='record,transfer')
    ap.add_argument('--species', default='mouse,human')
    ap.add_argument('--repeats', type=int, default=None, help='default: 5 (record), 3 (transfer)')
    ap.add_argument('--folds', type=int, default=5)
    ap.add_argument('--sizes', default='10,20,40,80,160,all')
    ap.add_argument('--strategies', default=STRATEGIES, help='the strategies of the transfer part')
    ap.add_argument('--joint-epochs', type=int, default=None, help="the cheaper arm's epochs of nn_joint and nn_dann")
    ap.add_argument('--source-batch', type=int, default=None,
                    help="the cheaper arm's mouse (and unlabelled) cells a step of nn_joint and nn_dann")
    ap.add_argument('--record-seed', type=int, default=21)
    ap.add_argument('--forest-seed', type=int, default=31, help='the forest part: its folds, and its transfer folds + 1')
    ap.add_argument('--transfer-seed', type=int, default=22)
    ap.add_argument('--n-workers', type=int, default=2)
    ap.add_argument('--out', default=str(HERE / 'results' / 'cheaper_fits.json'))
    ap.add_argument('--no-progress', action='store_true')
    a = ap.parse_args(argv)
    warnings.filterwarnings('ignore')
    if a.joint_epochs:
        CHEAPER.update(nn_joint=dict(epochs=a.joint_epochs, source_batch_size=256),
                       nn_dann=dict(epochs=a.joint_epochs, source_batch_size=256))
    if a.source_batch:
        CHEAPER.update(nn_joint=dict(source_batch_size=a.source_batch), nn_dann=dict(source_batch_size=a.source_batch))
    parts, t0 = a.part.split(','), time.time()
    res = dict(command='python bench/bench_cheaper_fits.py ' + ' '.join(argv or sys.argv[1:]),
               inner=INNER, reference=REFERENCE, cheaper=CHEAPER, cpus=os.cpu_count(), machine=platform.machine())
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record_rows, transfer_rows = [], None
    with tempfile.TemporaryDirectory() as d:
        if 'record' in parts:
            runs, record_rows = record_part(a.species.split(','), a.repeats or 5, a.folds, a.record_seed,
                                            a.n_workers, not a.no_progress, Path(d) / 'record')
            runs.to_parquet(out.with_name(out.stem + '_record.parquet'), index=False)
            res |= dict(record_seed=a.record_seed, record_checks=record_rows,
                        one_fit_all_mouse_s={arm: one_fit(kw, a.record_seed) for arm, kw in INNER.items()})
        if 'transfer' in parts:
            runs, transfer_rows = transfer_part(a.strategies, a.sizes, a.repeats or 3, a.folds, a.transfer_seed, a.n_workers,
                                                Path(d) / 'transfer')
            runs.to_parquet(out.with_name(out.stem + '_transfer.parquet'), index=False)
            res |= dict(transfer_seed=a.transfer_seed, transfer_checks=transfer_rows.to_dict('records'),
                        transfer_fit_seconds=runs.groupby(['arm', 'model']).fit_seconds.sum().round(1)
                        .unstack(0).to_dict())
        if 'forest' in parts:
            runs, forest_rows = forest_part(a.species.split(','), a.repeats or 5, a.folds, a.forest_seed, a.n_workers,
                                            not a.no_progress, Path(d) / 'forest')
            truns, ttable = forest_transfer(a.sizes, a.repeats or 3, a.folds, a.forest_seed + 1, a.n_workers,
                                            Path(d) / 'forest_transfer')
            runs.to_parquet(out.with_name(out.stem + '_forest.parquet'), index=False)
            truns.to_parquet(out.with_name(out.stem + '_forest_transfer.parquet'), index=False)
            ok = ttable.groupby('strategy').not_worse.all().to_dict()
            rf_ok = all(r['passes'] for r in forest_rows if r['model'] in ('rf', 'record')) and all(ok.values())
            res |= dict(forest=FOREST, forest_seed=a.forest_seed, forest_checks=forest_rows,
                        forest_transfer_checks=ttable.to_dict('records'),
                        forest_adopted=dict(
                            rf=rf_ok,
                            rf_spca=all(r['passes'] for r in forest_rows if r['model'] == 'rf_spca')))
            print(pd.DataFrame(forest_rows).to_markdown(index=False))
            print(ttable.assign(ci=ttable.ci.map(lambda c: f"[{c[0]:+.3f}, {c[1]:+.3f}]")).to_markdown(index=False))
            print(json.dumps(res['forest_adopted']))
    res |= dict(adopted=adopted(record_rows, transfer_rows), wall_s=round(time.time() - t0, 1),
                measured=time.strftime('%Y-%m-%d %H:%M'))
    out.write_text(json.dumps(res, indent=1, default=float))
    if record_rows:
        print('\n| species | arm | record | cheaper arm | difference | corrected p | 95% CI | log-loss (record → arm) | '
              'log-loss p | 90% sets: coverage; size | passes |')
        print('|---|---|---:|---:|---:|---:|---|---:|---:|---|---|')
        for r in record_rows:
            print(f"| {r['species']} | {r['arm']} | {r['reference']} | {r['cheaper']} | {r['diff']:+.3f} | {r['p']:.2g} | "
                  f"[{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}] | {r['log_loss_reference']} → {r['log_loss_cheaper']} | "
                  f"{r['log_loss_p']:.2g} | {r['coverage']}; {r['set_size']} | {'yes' if r['passes'] else 'no'} |")
        print('one fit on all mouse cells: ' + ', '.join(f'{k} {v:.1f} s' for k, v in res['one_fit_all_mouse_s'].items()))
    if transfer_rows is not None:
        t = transfer_rows.assign(ci=transfer_rows.ci.map(lambda c: f"[{c[0]:+.3f}, {c[1]:+.3f}]"))
        print(t.to_markdown(index=False))
    print(json.dumps({k: res[k] for k in ('adopted', 'wall_s')}, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
