"""`ephys2tx predict` on many cells against pandas reading and writing the same CSV: time and memory, with ratios.

    python bench/bench_predict.py                      # 100,000 cells, the named human model, 3 repeats
    python bench/bench_predict.py --cells 20000 --repeats 1
    python bench/bench_predict.py --chunk 16384 --keep-freed --json /tmp/p.json   # another part size; no release

The input is the QC-passed human cells of the data mirror, tiled to `--cells` rows with unique IDs (a CSV of the
model's feature columns and `specimen_id`). Each measurement runs in a fresh process:

- **pandas**: `pd.read_csv` of the input, then `to_csv` of that table: the reference time, and its memory above the
  interpreter.
- **predict**: what `ephys2tx predict --input in.csv --out out.csv` does once the model is loaded: read, check and
  predict the file a part at a time (`predict` of the path: `iter_table`, `predict_cells`), write the predictions
  (`write_table`); its time per stage, and its peak memory above the process with the package imported and the
  model loaded.
- **command**: the whole command in a subprocess (interpreter start, imports and the model's loading included).

The ratios: predict's time over pandas' (aim: at most 3) and predict's memory above the loaded model over the
table's size in memory (aim: under 2). Writes `bench/results/predict.json` and prints a table.
"""
import argparse, json, os, platform, resource, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def rss_mb() -> float:
    "This process's resident memory now, MB."
    with open('/proc/self/statm') as f: return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def peak_mb() -> float:
    "This process's peak resident memory so far, MB."
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_input(path: Path, n: int, model: str) -> dict:
    "Tile the QC-passed human cells to `n` rows (unique `specimen_id`) with the model's feature columns; write CSV."
    import numpy as np, pandas as pd
    from ephys2tx.data import load_cells
    from ephys2tx.predictor import load_model
    from ephys2tx.bundles import model_features
    cells = load_cells('human', progress=False)
    feats = list(model_features(load_model(model, progress=False)))
    reps = -(-n // len(cells))
    t = pd.concat([cells[feats]] * reps, ignore_index=True).iloc[:n]
    t.insert(0, 'specimen_id', np.arange(1, n + 1) + 10**9)
    t.to_csv(path, index=False)
    return dict(cells=n, columns=t.shape[1], file_mb=path.stat().st_size / 2**20, unique_cells=len(cells))


def child_pandas(inp: str, out: str) -> dict:
    import pandas as pd
    base = rss_mb()
    t0 = time.perf_counter(); df = pd.read_csv(inp); t1 = time.perf_counter()
    df.to_csv(out, index=False); t2 = time.perf_counter()
    return dict(read_s=t1 - t0, write_s=t2 - t1, total_s=t2 - t0, table_mb=df.memory_usage(deep=True).sum() / 2**20,
                base_mb=base, peak_mb=peak_mb(), extra_mb=peak_mb() - base)


def child_predict(inp: str, out: str, model: str, chunk: str = '0', keep_freed: str = '0') -> dict:
    import warnings
    import ephys2tx.bundles, ephys2tx.predictor
    from ephys2tx.data import write_table
    from ephys2tx.predictor import load_model, predict
    if int(chunk): ephys2tx.predictor.CHUNK = int(chunk)                  # cells a part (default: `CHUNK`)
    if int(keep_freed): ephys2tx.bundles.release_memory = lambda: False  # freed memory stays with the process
    base0 = rss_mb()
    t0 = time.perf_counter(); m = load_model(model, progress=False); t1 = time.perf_counter()
    base = rss_mb()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        t2 = time.perf_counter(); pred = predict(inp, m); t4 = time.perf_counter()   # read, check, predict: in parts
        write_table(pred, out, source=inp); t5 = time.perf_counter()
    return dict(load_model_s=t1 - t0, model_mb=base - base0, read_predict_s=t4 - t2, write_s=t5 - t4,
                total_s=t5 - t2, base_mb=base, peak_mb=peak_mb(), extra_mb=peak_mb() - base,
                predicted=int((pred.status == 'ok').sum()))


def run_child(kind: str, *args) -> dict:
    r = subprocess.run([sys.executable, __file__, '--child', kind, *args], capture_output=True, text=True)
    if r.returncode: raise SystemExit(f'{kind} failed:\n{r.stderr[-3000:]}')
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_command(inp: str, out: str, model: str) -> dict:
    exe = Path(sys.executable).with_name('ephys2tx')
    cmd = [str(exe) if exe.exists() else 'ephys2tx', 'predict', '--model', model, '--input', inp, '--out', out]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode: raise SystemExit(f'ephys2tx predict failed:\n{r.stderr[-3000:]}')
    return dict(wall_s=wall, peak_mb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                printed=r.stdout.strip().splitlines()[0])


def mean_sd(xs):
    import numpy as np
    return float(np.mean(xs)), float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--cells', type=int, default=100_000, help='rows of the input table')
    ap.add_argument('--model', default='human', help='a named model or a bundle folder')
    ap.add_argument('--repeats', type=int, default=3, help='measurements of each kind (fresh processes)')
    ap.add_argument('--json', default=str(HERE / 'results' / 'predict.json'), help='where to write the results')
    ap.add_argument('--chunk', type=int, default=0, help='cells a part (default: the package\'s CHUNK)')
    ap.add_argument('--keep-freed', action='store_true', help='no release of freed memory between the parts')
    ap.add_argument('--child', nargs='+', help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        kind, *rest = a.child
        print(json.dumps(child_pandas(*rest) if kind == 'pandas' else child_predict(*rest)))
        return 0
    with tempfile.TemporaryDirectory() as d:
        inp = Path(d) / 'cells.csv'
        info = make_input(inp, a.cells, a.model)      # builds and caches a named model on its first use
        runs = dict(pandas=[], predict=[], command=[])
        for i in range(a.repeats):
            runs['pandas'].append(run_child('pandas', str(inp), str(Path(d) / 'pandas_out.csv')))
            runs['predict'].append(run_child('predict', str(inp), str(Path(d) / 'pred_out.csv'), a.model,
                                             str(a.chunk), str(int(a.keep_freed))))
            print(f"repeat {i + 1}/{a.repeats}: pandas {runs['pandas'][-1]['total_s']:.2f} s, "
                  f"predict {runs['predict'][-1]['total_s']:.2f} s", file=sys.stderr)
        runs['command'].append(run_command(str(inp), str(Path(d) / 'cmd_out.csv'), a.model))
    time_ratio = [p['total_s'] / q['total_s'] for p, q in zip(runs['predict'], runs['pandas'])]
    mem_ratio = [p['extra_mb'] / q['table_mb'] for p, q in zip(runs['predict'], runs['pandas'])]
    summary = dict(time_ratio=mean_sd(time_ratio), memory_ratio=mean_sd(mem_ratio),
                   **{f'{k}_{s}': mean_sd([r[s] for r in runs[k]]) for k, ss in
                      dict(pandas=('read_s', 'write_s', 'total_s', 'table_mb', 'extra_mb'),
                           predict=('load_model_s', 'model_mb', 'read_predict_s', 'write_s', 'total_s',
                                    'base_mb', 'peak_mb', 'extra_mb')).items() for s in ss})
    import ephys2tx.bundles
    opts = (f' --chunk {a.chunk}' if a.chunk else '') + (' --keep-freed' if a.keep_freed else '')
    res = dict(command=f'python bench/bench_predict.py --cells {a.cells} --model {a.model} --repeats {a.repeats}{opts}',
               chunk=a.chunk or ephys2tx.bundles.CHUNK, release_freed=not a.keep_freed,
               input=info, summary=summary, runs=runs, cpus=os.cpu_count(), machine=platform.machine(),
               python=platform.python_version(), measured=time.strftime('%Y-%m-%d %H:%M'))
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(res, indent=1))
    s = summary
    f = lambda k, u='s', p=2: f"{s[k][0]:.{p}f} ± {s[k][1]:.{p}f} {u}"
    print(f"\n{a.cells:,} cells, {info['columns']} columns, {info['file_mb']:.0f} MB CSV; mean ± SD of {a.repeats} "
          f"fresh processes, {os.cpu_count()} CPUs\n")
    print('| | time | memory above the start (pandas) or the loaded model (predict) |\n|---|---:|---:|')
    print(f"| pandas read + write | {f('pandas_total_s')} | {f('pandas_extra_mb', 'MB', 0)} "
          f"(table in memory {s['pandas_table_mb'][0]:.0f} MB) |")
    print(f"| predict: read + check + predict (in parts), write | {f('predict_total_s')} (read and predict "
          f"{s['predict_read_predict_s'][0]:.2f}, write {s['predict_write_s'][0]:.2f}) | {f('predict_extra_mb', 'MB', 0)} |")
    print(f"| **ratio** | **{s['time_ratio'][0]:.2f} ± {s['time_ratio'][1]:.2f}** (aim ≤ 3) | "
          f"**{s['memory_ratio'][0]:.2f} ± {s['memory_ratio'][1]:.2f}** × the table (aim < 2) |")
    c = runs['command'][0]
    print(f"\nthe whole command (start, imports, loading the model {s['predict_load_model_s'][0]:.2f} s, "
          f"{s['predict_model_mb'][0]:.0f} MB): {c['wall_s']:.1f} s, peak {c['peak_mb']:.0f} MB; it printed: {c['printed']}")
    print(f'results written to {a.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
