"""The built wheel works without the source checkout: every module imports and the report notebooks ship."""
import subprocess, sys, zipfile
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def unpacked_wheel(tmp_path_factory):
    d = tmp_path_factory.mktemp('wheel')
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation',
                        '-w', str(d / 'dist'), str(ROOT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = (d / 'dist').glob('ephys2tx-*.whl')
    with zipfile.ZipFile(whl) as z: z.extractall(d / 'site')
    return d / 'site'


def test_wheel_imports_without_notebooks(unpacked_wheel, tmp_path):
    code = ("import ephys2tx, ephys2tx.cli, ephys2tx.data, ephys2tx.features, ephys2tx.evaluation, ephys2tx.gouwens, "
            "ephys2tx.nets, ephys2tx.training, ephys2tx.bilstm, ephys2tx.bundles, ephys2tx.interpret, "
            "ephys2tx.sweep, ephys2tx.transfer, ephys2tx.reproduce, ephys2tx.nwb, ephys2tx.synthetic, "
            "ephys2tx.commands, ephys2tx.stages, ephys2tx.adapt, ephys2tx.record, ephys2tx.predictor\n"
            "from ephys2tx.reproduce import REPORTS_DIR\nfrom ephys2tx.stages import STAGES\n"
            "print(ephys2tx.__file__); print(REPORTS_DIR)\n"
            "missing = [s.report for s in STAGES.values() if not (REPORTS_DIR / s.report).is_file()]\n"
            "assert not missing, missing\n")
    r = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, capture_output=True, text=True,
                       env={'PYTHONPATH': str(unpacked_wheel), 'PATH': '/usr/bin:/bin', 'HOME': str(tmp_path)})
    assert r.returncode == 0, r.stderr[-3000:]
    pkg, reports = r.stdout.split()
    assert pkg.startswith(str(unpacked_wheel)) and reports == str(unpacked_wheel / 'ephys2tx' / 'report_notebooks')
