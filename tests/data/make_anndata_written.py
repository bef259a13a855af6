"""Writes anndata_written.h5ad (dense X) and anndata_written_csr.h5ad (CSR X) with the anndata package itself.

It runs in a separate environment, not the project's: anndata 0.12.19 requires pandas<3, so it was run with
anndata 0.12.19, pandas 2.3.3, h5py 3.16.0 (Python 3.11) in a throwaway venv:
    python3 -m venv /tmp/adenv && /tmp/adenv/bin/pip install anndata
    /tmp/adenv/bin/python tests/data/make_anndata_written.py
tests/test_io.py checks that ephys2tx.data.read_table reads every value of these files.
"""
from pathlib import Path
import anndata as ad, numpy as np, pandas as pd
from scipy import sparse

HERE = Path(__file__).parent
cells = pd.Index([f'cell_{i}' for i in range(6)], name='cell_id')
obs = pd.DataFrame({
    'donor': ['H18.001', 'H18.002', 'H19.003', 'H19.004', 'H20.005', 'H20.006'],  # unique strings: a string array
    'subclass': pd.Categorical(['Pvalb', 'Sst', 'Pvalb', 'Vip', None, 'Sst']),    # a categorical with a missing value
    'soma_depth': [120.5, 340.25, np.nan, 88.0, 410.75, 265.125],                # floats with a missing value
    'n_sweeps': np.array([12, 9, 15, 11, 8, 14], dtype='int64'),
}, index=cells)
var = pd.DataFrame(index=pd.Index(['input_resistance', 'tau', 'v_baseline', 'sag'], name='feature'))
X = np.array([[150.5, 12.25, -70.5, 0.05],
              [98.0, 8.5, -65.25, 0.125],
              [210.75, np.nan, -72.0, 0.0],
              [55.5, 20.0, -68.75, 0.25],
              [175.25, 15.5, np.nan, 0.0625],
              [130.0, 10.75, -71.5, 0.0]])
ad.AnnData(X=X, obs=obs, var=var).write_h5ad(HERE / 'anndata_written.h5ad')
Xs = np.nan_to_num(X) * (np.arange(24).reshape(6, 4) % 3 != 0)   # a third of the entries zero: stored sparse
ad.AnnData(X=sparse.csr_matrix(Xs), obs=obs, var=var).write_h5ad(HERE / 'anndata_written_csr.h5ad')
