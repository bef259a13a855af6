#!/usr/bin/env python
"""Benchmark NWB -> Gouwens feature-vector extraction (ephys2tx.nwb.extract_files) through Dask:
files/s, seconds per file, peak resident memory per worker process, for a synthetic cohort (or your NWB folder).

    python bench/bench_extract.py --n-files 8 --n-workers 2            # synthetic cohort written to a temp folder
    python bench/bench_extract.py --nwb /data/dandi/000020 --n-workers 8 --limit 200

Writes bench/results/extract_<n_workers>w_<n_files>f.json and prints a markdown table. A script, not a test.
"""
import argparse, json, os, platform, shutil, sys, tempfile, time
from pathlib import Path
import numpy as np, pandas as pd
from ephys2tx.nwb import extract_files, manifest
from ephys2tx.synthetic import write_synthetic_cohort


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--nwb', help='folder / manifest of real NWB files (default: a synthetic cohort)')
    ap.add_argument('--n-files', type=int, default=8, help='synthetic cohort size (half fast, half adapting)')
    ap.add_argument('--limit', type=int, default=None, help='use only the first N files of --nwb')
    ap.add_argument('--n-workers', type=int, default=2)
    ap.add_argument('--max-in-flight', type=int, default=None)
    ap.add_argument('--scheduler', default='local')
    ap.add_argument('--out-dir', default=str(Path(__file__).parent / 'results'))
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix='bench_extract_'))
    try:
        if a.nwb:
            src = manifest(a.nwb)
            if a.limit: src = src.head(a.limit)
            files = list(src.path); label = f'{Path(a.nwb).name}'
        else:
            t0 = time.perf_counter()
            m = write_synthetic_cohort(work / 'nwb', n_per_class=max(1, a.n_files // 2), jitter=0.1)
            files = list(m.path); label = 'synthetic'
            print(f'wrote {len(files)} synthetic files in {time.perf_counter() - t0:.1f} s')
        t0 = time.perf_counter()
        res = extract_files(files, work / 'features.parquet', n_workers=a.n_workers, scheduler=a.scheduler,
                            max_in_flight=a.max_in_flight, resume=False, progress=True)
        wall = time.perf_counter() - t0      # includes cluster start-up and writing the table
        recs = pd.DataFrame([dict(file=r['file'], status=r['status'], pid=r['pid'], seconds=r['seconds'],
                                  peak_rss_mb=r['peak_rss_mb']) for r in res.records])
        per_worker = recs.groupby('pid').agg(files=('file', 'size'), peak_rss_mb=('peak_rss_mb', 'max'),
                                             busy_s=('seconds', 'sum')).reset_index()
        size_mb = sum(os.path.getsize(f) for f in files) / 2 ** 20
        out = dict(source=label, n_files=len(files), n_ok=int((recs.status == 'ok').sum()),
                   n_failed=int((recs.status != 'ok').sum()), n_workers=a.n_workers, scheduler=a.scheduler,
                   wall_s=round(wall, 2), files_per_s=round(len(files) / wall, 3),
                   mean_s_per_file=round(float(recs.seconds.mean()), 3),
                   input_mb=round(size_mb, 1), mb_per_s=round(size_mb / wall, 2),
                   peak_rss_mb_per_worker={str(r.pid): round(float(r.peak_rss_mb), 1) for r in per_worker.itertuples()},
                   max_worker_peak_rss_mb=round(float(per_worker.peak_rss_mb.max()), 1),
                   files_per_worker={str(r.pid): int(r.files) for r in per_worker.itertuples()},
                   python=platform.python_version(), cpus=os.cpu_count(), host=platform.node(),
                   date=time.strftime('%Y-%m-%d %H:%M:%S'))
        Path(a.out_dir).mkdir(parents=True, exist_ok=True)
        p = Path(a.out_dir) / f'extract_{label}_{a.n_workers}w_{len(files)}f.json'
        p.write_text(json.dumps(out, indent=1))
        print('\n| files | workers | wall (s) | files/s | s/file (worker) | max peak RSS/worker (MiB) | failed |')
        print('|---|---|---|---|---|---|---|')
        print(f"| {out['n_files']} | {a.n_workers} | {out['wall_s']} | {out['files_per_s']} | {out['mean_s_per_file']} | "
              f"{out['max_worker_peak_rss_mb']} | {out['n_failed']} |")
        print(f'\nwrote {p}')
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
