"nbdev's own processing of the notebooks (what `nbdev_docs` runs before rendering) works on a copy of the project."
import os, shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_nbdev_proc_nbs_keeps_index_and_sidebar(tmp_path, mirror):
    exe = Path(sys.executable).parent / 'nbdev_proc_nbs'
    if not exe.is_file(): pytest.skip('nbdev is not installed in this environment')
    files = subprocess.run(['git', 'ls-files'], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (tmp_path / f).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(ROOT / f, tmp_path / f)
    sidebar = (tmp_path / 'nbs' / 'sidebar.yml').read_text()
    env = dict(os.environ, EPHYS2TX_DATA=str(mirror), MPLBACKEND='Agg')
    r = subprocess.run([str(exe)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (tmp_path / 'nbs' / 'sidebar.yml').read_text() == sidebar          # chapters only, not rewritten
    index = (tmp_path / '_proc' / 'index.ipynb').read_text()
    assert 'Quick start' in index and '06_transfer.ipynb' in index             # the introduction survives
