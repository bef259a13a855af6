#!/usr/bin/env python
"""Benchmark the attention BiLSTM (ephys2tx.bilstm): wall time to train one model on all QC-passed mouse
cells and on all human cells, inference throughput (cells/s) and peak memory, on the device given by --device.

    EPHYS2TX_DATA=/path/to/mirror python bench/bench_bilstm.py --device cuda
    python bench/bench_bilstm.py --device cpu --epochs 10 --species human   # a quick look

Writes bench/results/bilstm_<device>.json (--out to change) and prints a markdown table. A script, not a test.
"""
import argparse, json, os, platform, resource, sys, time, warnings
from pathlib import Path
import numpy as np, pandas as pd, torch
from ephys2tx.data import load_cells
from ephys2tx.training import resolve_device
from ephys2tx.evaluation import make_model


def rss_mib() -> float:
    "Peak resident set size of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 ** 2 if sys.platform == 'darwin' else 1024)


def bench_species(species, device, epochs, patience, batch_size, model, infer_repeats, seed, progress):
    cells = load_cells(species, progress=False)
    y = cells['subclass'].to_numpy()
    if device.type == 'cuda': torch.cuda.reset_peak_memory_stats(device); torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    given = {k: v for k, v in dict(patience=patience, batch_size=batch_size).items() if v is not None}
    m = make_model(model, species, random_state=seed, epochs=epochs, device=str(device), progress=progress,
                   **given).fit(cells, y)
    if device.type == 'cuda': torch.cuda.synchronize(device)
    train_s = time.perf_counter() - t0
    T = m._tensors(cells)
    m._run(T.values, T.obs_mask, T.fam_mask)                    # warm-up
    if device.type == 'cuda': torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(infer_repeats): m._run(T.values, T.obs_mask, T.fam_mask)
    if device.type == 'cuda': torch.cuda.synchronize(device)
    infer_s = (time.perf_counter() - t0) / infer_repeats
    t0 = time.perf_counter(); m.predict_proba(cells); e2e_s = time.perf_counter() - t0
    return dict(species=species, n_cells=len(cells), model=model, smote=m.smote, hidden=m.hidden, batch_size=m.batch_size, epochs_run=len(m.history_), max_epochs=epochs,
                best_epoch=m.best_epoch_, train_seconds=round(train_s, 2),
                seconds_per_epoch=round(m.fit_seconds_ / len(m.history_), 4),
                inference_cells_per_s=round(len(cells) / infer_s, 1),
                predict_proba_cells_per_s=round(len(cells) / e2e_s, 1),
                peak_rss_mib=round(rss_mib(), 1),
                cuda_max_allocated_mib=(round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)
                                        if device.type == 'cuda' else None))


def markdown_table(df: pd.DataFrame) -> str:
    "A GitHub markdown table (no tabulate dependency)."
    cells = [[str(c) for c in df.columns]] + [['' if v is None else str(v) for v in r] for r in df.itertuples(index=False)]
    return '\n'.join(['| ' + ' | '.join(r) + ' |' for r in cells[:1]] + ['|' + '---|' * len(df.columns)] +
                     ['| ' + ' | '.join(r) + ' |' for r in cells[1:]])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--device', default='auto', help="'auto', 'cpu' or 'cuda'")
    ap.add_argument('--species', nargs='+', default=['mouse', 'human'], choices=['mouse', 'human'])
    ap.add_argument('--epochs', type=int, default=100)
    ap.add_argument('--patience', type=int, default=None, help="default: the model's recipe (BILSTM_RECIPE)")
    ap.add_argument('--batch-size', type=int, default=None, help="default: the model's recipe (BILSTM_RECIPE)")
    ap.add_argument('--model', default='bilstm', help='registered BiLSTM model (bilstm, bilstm_mean, bilstm_last, bilstm_published)')
    ap.add_argument('--infer-repeats', type=int, default=5)
    ap.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch chooses)')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--out', default=None, help='JSON path (default bench/results/bilstm_<device>.json (--out to change))')
    ap.add_argument('--progress', action='store_true')
    a = ap.parse_args(argv)
    warnings.filterwarnings('ignore', message='.*training minimum')
    if a.threads: torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    rows = [bench_species(s, device, a.epochs, a.patience, a.batch_size, a.model, a.infer_repeats, a.seed, a.progress)
            for s in a.species]
    info = dict(device=str(device), device_name=(torch.cuda.get_device_name(device) if device.type == 'cuda'
                                                  else platform.processor() or platform.machine()),
                torch=torch.__version__, cuda=torch.version.cuda, threads=torch.get_num_threads(),
                cpu_count=os.cpu_count(), date=time.strftime('%Y-%m-%dT%H:%M:%S%z'))
    out = Path(a.out) if a.out else Path(__file__).resolve().parent / 'results' / f'bilstm_{device.type}.json'
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(info=info, results=rows), indent=1))
    print(f"BiLSTM benchmark on {info['device']} ({info['device_name']}, torch {info['torch']}, "
          f"{info['threads']} CPU threads)\n")
    print(markdown_table(pd.DataFrame(rows)))
    print(f"\nwritten: {out}")


if __name__ == '__main__':
    main()
