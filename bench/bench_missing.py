"""Missing protocols: macro-F1 against the number of masked feature families, on held-out Allen cells.

    python bench/bench_missing.py                       # both species, 3 folds, 3 family subsets per count

Per species and stratified outer fold, three models are trained on the training cells: the BiLSTM of record
(`BILSTM_RECIPE`), the same with the masking augmentation of `ephys2tx train` (`MASKING`), and, for every
subset of masked families, a random forest (`rf`, 500 trees) retrained on the features of the families left.
The test cells get the same families hidden; a test cell with none of the remaining families observed is left
out for every model (it could not be scored by the networks). Subsets: every count of masked families from 0
to F - 1, up to `--subsets` random subsets per count (the same for every model and fold). Writes
`bench/results/missing_protocols.json` and `.csv` and prints the README's table: mean ± SD over folds x subsets,
and the check of the aim (masked bundle within 0.03 of the retrained forest with a third of the features).
`bundle (net or forest)` is what `ephys2tx predict` of a bundle with its training cells does with those families
missing: the masked net or a forest on the features left (the evaluation chapter's `rf`, fitted on the training
cells that are not the net's validation cells), whichever scores higher on those validation cells; the forest is
then refit on all training cells, which is the `rf retrained` of the same fold (same seed).
"""
import argparse, itertools, json, os, sys, time, warnings
from pathlib import Path
import numpy as np, pandas as pd

HERE = Path(__file__).resolve().parent


def family_subsets(fams: list, k: int, n: int, seed: int) -> list:
    "Up to `n` distinct subsets of `k` family names, drawn with `seed` (all of them when there are fewer)."
    combos = list(itertools.combinations(fams, k))
    if len(combos) <= n: return combos
    rng = np.random.default_rng([seed, k])
    return [combos[i] for i in sorted(rng.choice(len(combos), n, replace=False))]


def _masked(df, cols):
    return df.assign(**{c: np.nan for c in cols})


def _net_job(sp, cells, fold, tr, te, masking, subsets, epochs, seed):
    "Fit one BiLSTM on the training cells; score it on the test cells under every subset of hidden families."
    from sklearn.metrics import f1_score
    from ephys2tx.bilstm import BiLSTMClassifier, BILSTM_RECIPE
    from ephys2tx.bundles import MASKING, subset_model
    from ephys2tx.features import get_schema
    cols = {f.name: f.names for f in get_schema(sp)}
    y = cells['subclass'].to_numpy().astype(str)
    kw = dict(family_dropout=MASKING['family_p'], feature_dropout=MASKING['feature_p']) if masking else {}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        m = BiLSTMClassifier(schema=sp, epochs=epochs, device='cpu', random_state=seed + fold, **BILSTM_RECIPE, **kw)
        m.fit(cells.iloc[tr], y[tr])
        rows = []
        for sub in subsets:
            hidden = [c for f in sub for c in cols[f]]
            T = m.transform_.transform(_masked(cells.iloc[te], hidden))
            ok = T.fam_mask.any(1)
            P = m._run(T.values[ok], T.obs_mask[ok], T.fam_mask[ok])[0]
            # what `predict` of a bundle with its training cells would use: chosen on the net's validation cells
            ch = subset_model(m, hidden, reference=cells.iloc[tr], random_state=seed + fold, refit=False) if masking else None
            rows.append(dict(subset=list(sub), macro_f1=f1_score(y[te][ok], m.classes_[P.argmax(1)], average='macro'),
                             n_scored=int(ok.sum()), use=(ch or {}).get('use', 'bilstm'),
                             val_bilstm=(ch or {}).get('bilstm'), val_forest=(ch or {}).get('forest')))
    name = 'bilstm (masking)' if masking else 'bilstm'
    return [dict(species=sp, fold=fold, model=name, fit_seconds=m.fit_seconds_, n_train=len(tr), n_test=len(te), **r)
            for r in rows]


def _rf_job(sp, cells, fold, tr, te, sub, seed):
    "The forest retrained on the features of the families not in `sub`, scored on the same test cells as the nets."
    from sklearn.metrics import f1_score
    from ephys2tx.evaluation import make_model
    from ephys2tx.features import FamilyTransform, get_schema
    cols = [c for f in get_schema(sp) if f.name in sub for c in f.names]
    y = cells['subclass'].to_numpy().astype(str)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        ok = FamilyTransform(sp).fit(cells.iloc[tr]).transform(_masked(cells.iloc[te], cols)).fam_mask.any(1)
        t0 = time.perf_counter()
        m = make_model('rf', sp, seed + fold).fit(_masked(cells.iloc[tr], cols), y[tr])
        sec = time.perf_counter() - t0
        pred = m.predict(_masked(cells.iloc[te], cols).iloc[np.flatnonzero(ok)])
    return [dict(species=sp, fold=fold, model='rf retrained', subset=list(sub), fit_seconds=sec, n_scored=int(ok.sum()),
                 n_train=len(tr), n_test=len(te),
                 macro_f1=f1_score(y[te][ok], pred, average='macro'))]


def _run_job(kind, *args):
    return (_net_job if kind == 'net' else _rf_job)(*args)


def with_bundle(res: pd.DataFrame) -> pd.DataFrame:
    "Add the bundle's rows: per fold and subset, the masked net or the retrained forest, as its validation choice says."
    key = ['species', 'fold', 'subset_key']
    r = res.assign(subset_key=res.subset.map('+'.join))
    net = r[r.model == 'bilstm (masking)'].set_index(key)
    rf = r[r.model == 'rf retrained'].set_index(key)['macro_f1']
    b = net.copy()
    b['macro_f1'] = np.where(b['use'] == 'forest', rf.reindex(b.index).to_numpy(), b['macro_f1'].to_numpy())
    b['model'] = 'bundle (net or forest)'
    return pd.concat([res, b.reset_index().drop(columns='subset_key')], ignore_index=True)


def summary(res: pd.DataFrame, widths: dict) -> pd.DataFrame:
    "Mean ± SD per species, model and number of hidden families, with the share of features left."
    res = res.assign(k=res.subset.map(len), present=[1 - sum(widths[s][f] for f in sub) / sum(widths[s].values())
                                                     for s, sub in zip(res.species, res.subset)])
    g = res.groupby(['species', 'k', 'model'])
    t = g.macro_f1.agg(['mean', 'std', 'count']).join(g.present.mean()).reset_index()
    return t


def aim(res: pd.DataFrame, widths: dict, lo: float = 0.2, hi: float = 0.45) -> pd.DataFrame:
    "Masked bundle − retrained forest, paired by fold and subset, over the subsets that leave lo..hi of the features."
    from ephys2tx.evaluation import compare
    res = res.assign(present=[1 - sum(widths[s][f] for f in sub) / sum(widths[s].values())
                              for s, sub in zip(res.species, res.subset)], key=res.subset.map('+'.join))
    rows = []
    for sp, r in res.groupby('species'):
        r = r[(r.present >= lo) & (r.present <= hi)]
        if not len(r): continue
        r = r.assign(repeat=r.key.astype('category').cat.codes)      # one 'repeat' per subset: pairs = fold x subset
        for m in ['bundle (net or forest)', 'bilstm (masking)', 'bilstm']:
            c = compare(r, m, 'rf retrained')
            rows.append(dict(species=sp, model=m, subsets=r.key.nunique(), pairs=c['n_pairs'],
                             features_left=f"{r.present.min():.0%}-{r.present.max():.0%}", mean=c['mean_a'],
                             rf=c['mean_b'], diff=c['mean_diff'], sd_diff=c['sd_diff'], p=c['p'],
                             within_003=c['mean_diff'] >= -0.03))
    return pd.DataFrame(rows)


def markdown(t: pd.DataFrame) -> str:
    models = ['bilstm', 'bilstm (masking)', 'rf retrained', 'bundle (net or forest)']
    lines = ['| species | families hidden | features left | ' + ' | '.join(f'`{m}`' for m in models) + ' |',
             '|---|---:|---:|' + '---:|' * len(models)]
    for (sp, k), g in t.groupby(['species', 'k'], sort=False):
        g = g.set_index('model')
        cell = lambda m: f"{g.loc[m, 'mean']:.3f} ± {0 if np.isnan(g.loc[m, 'std']) else g.loc[m, 'std']:.3f}"
        lines.append(f'| {sp} | {k} | {g.present.iloc[0]:.0%} | ' + ' | '.join(cell(m) for m in models) + ' |')
    return '\n'.join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--species', default='mouse,human')
    ap.add_argument('--folds', type=int, default=3)
    ap.add_argument('--subsets', type=int, default=3, help='random family subsets per count of hidden families')
    ap.add_argument('--epochs', type=int, default=100)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--n-workers', type=int, default=2)
    ap.add_argument('--out', default=str(HERE / 'results' / 'missing_protocols'))
    a = ap.parse_args(argv)
    from sklearn.model_selection import StratifiedKFold
    from ephys2tx.data import load_cells
    from ephys2tx.evaluation import Executor, fan_out
    from ephys2tx.features import get_schema
    t0, jobs, widths, data = time.time(), [], {}, {}
    for sp in a.species.split(','):
        cells = load_cells(sp, progress=False).reset_index(drop=True)
        fams = [f.name for f in get_schema(sp)]
        widths[sp] = {f.name: f.width for f in get_schema(sp)}
        subsets = [s for k in range(len(fams)) for s in family_subsets(fams, k, a.subsets, a.seed)]
        skf = StratifiedKFold(a.folds, shuffle=True, random_state=a.seed)
        for fold, (tr, te) in enumerate(skf.split(cells, cells['subclass'])):
            jobs += [('net', sp, cells, fold, tr, te, masking, subsets, a.epochs, a.seed) for masking in (False, True)]
            jobs += [('rf', sp, cells, fold, tr, te, sub, a.seed) for sub in subsets]
    rows = sum(fan_out(_run_job, jobs, executor=Executor(n_workers=a.n_workers), desc='fits'), [])
    res = with_bundle(pd.DataFrame(rows))
    t, goal = summary(res, widths), aim(res, widths)
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    res.assign(subset=res.subset.map('+'.join)).to_csv(out.with_suffix('.csv'), index=False)
    out.with_suffix('.json').write_text(json.dumps(dict(
        command='python bench/bench_missing.py ' + ' '.join(argv if argv is not None else sys.argv[1:]),
        folds=a.folds, subsets=a.subsets, seed=a.seed, epochs=a.epochs, wall_seconds=time.time() - t0,
        cpus=os.cpu_count(), summary=t.to_dict('records'), aim=goal.to_dict('records'),
        measured=time.strftime('%Y-%m-%d %H:%M')), indent=1, default=float))
    print(markdown(t)); print()
    print(goal.round(3).to_string(index=False))
    print(f'\n{len(res)} scores, {time.time() - t0:,.0f} s; written to {out}.json / .csv')
    return 0


if __name__ == '__main__':
    sys.exit(main())
