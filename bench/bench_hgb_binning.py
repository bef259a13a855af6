#!/usr/bin/env python
"""Gradient boosting binned once (`SmallSampleHGB`) against scikit-learn's own weighted binning, on real folds.

    EPHYS2TX_DATA=/path/to/mirror python bench/bench_hgb_binning.py [--folds 5]

For each species and each stratified fold (seed 0), the registered `hgb` (features standardized, bins at
class-weighted quantiles computed by `weighted_bin_thresholds`, boosting on the bin numbers) and scikit-learn's
`HistGradientBoostingClassifier` with the same settings on the same standardized features (binning inside
`fit`) are fitted on the training part and compared on the test part: fit seconds (this process, one thread),
the share of identical predictions, the largest difference of a class probability, and macro-F1 of each.
Writes bench/results/hgb_binning.json and prints a table. A script, not a test.
"""
import argparse, json, os, platform, time, warnings
from pathlib import Path
import numpy as np, pandas as pd

HERE = Path(__file__).resolve().parent


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--folds', type=int, default=5)
    p.add_argument('--results', default=str(HERE / 'results' / 'hgb_binning.json'))
    a = p.parse_args(argv)
    from threadpoolctl import threadpool_limits
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold
    from ephys2tx.evaluation import load_task, make_model
    rows = []
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)
        for sp in ('mouse', 'human'):
            t = load_task(sp)
            for k, (tr, te) in enumerate(StratifiedKFold(a.folds, shuffle=True, random_state=0).split(t.X, t.y)):
                m = make_model('hgb', sp, 0)
                t0 = time.perf_counter(); m.fit(t.X.iloc[tr], t.y[tr]); s_new = time.perf_counter() - t0
                feats, clf = m.named_steps['features'], m.named_steps['clf']
                Xtr, Xte = feats.transform(t.X.iloc[tr]), feats.transform(t.X.iloc[te])
                raw = HistGradientBoostingClassifier(max_iter=clf.max_iter, learning_rate=clf.learning_rate,
                                                     min_samples_leaf=clf.leaf_size(len(tr)),
                                                     max_leaf_nodes=clf.max_leaf_nodes, class_weight='balanced',
                                                     early_stopping=False, random_state=0)
                t0 = time.perf_counter(); raw.fit(Xtr, t.y[tr]); s_old = time.perf_counter() - t0
                pn, po = m.predict(t.X.iloc[te]), raw.predict(Xte)
                rows.append(dict(species=sp, fold=k, n_train=len(tr), seconds_sklearn=round(s_old, 3),
                                 seconds_binned_once=round(s_new, 3), same_predictions=float(np.mean(pn == po)),
                                 max_proba_diff=float(np.abs(m.predict_proba(t.X.iloc[te]) - raw.predict_proba(Xte)).max()),
                                 macro_f1_sklearn=f1_score(t.y[te], po, average='macro'),
                                 macro_f1_binned_once=f1_score(t.y[te], pn, average='macro')))
                print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    summ = df.groupby('species', sort=False).agg(n_train=('n_train', 'mean'), seconds_sklearn=('seconds_sklearn', 'mean'),
                                                 seconds_binned_once=('seconds_binned_once', 'mean'),
                                                 same_predictions=('same_predictions', 'min'),
                                                 max_proba_diff=('max_proba_diff', 'max'),
                                                 macro_f1_sklearn=('macro_f1_sklearn', 'mean'),
                                                 macro_f1_binned_once=('macro_f1_binned_once', 'mean')).reset_index()
    out = dict(command='python bench/bench_hgb_binning.py', folds=a.folds, cpus=os.cpu_count(), machine=platform.machine(),
               python=platform.python_version(), summary=summ.round(4).to_dict('records'), rows=rows)
    Path(a.results).write_text(json.dumps(out, indent=1))
    print(summ.round(4).to_markdown(index=False))


if __name__ == '__main__':
    main()
