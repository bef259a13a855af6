"""JupyterLab, the way to read and rerun the notebooks: `make lab` opens `nbs/`.

Starts JupyterLab headless on a free local port in `nbs/` (as `make lab` does, without a browser) and checks
that its file listing holds the chapters and that the Lab page itself is served; in headless Chromium, when
one is installed, that the file browser shows the notebooks."""
import json, os, re, secrets, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def _get(url, token, timeout=5):
    req = urllib.request.Request(url, headers={'Authorization': f'token {token}'})
    with urllib.request.urlopen(req, timeout=timeout) as r: return r.status, r.read().decode()


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    pytest.importorskip('jupyterlab', reason='jupyterlab is installed by `make` (the dev extra)')
    port, token = _free_port(), secrets.token_hex(16)
    home = tmp_path_factory.mktemp('jupyter')
    env = {**os.environ, 'JUPYTER_CONFIG_DIR': str(home / 'config'), 'JUPYTER_RUNTIME_DIR': str(home / 'rt'),
           'JUPYTERLAB_WORKSPACES_DIR': str(home / 'ws')}
    cmd = [sys.executable, '-m', 'jupyterlab', '--no-browser', f'--port={port}', '--ip=127.0.0.1',
           f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={ROOT / "nbs"}', '--allow-root']
    log = open(home / 'lab.log', 'w')
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f'http://127.0.0.1:{port}'
    try:
        for _ in range(120):
            if proc.poll() is not None: break
            try: _get(f'{base}/api/status', token, timeout=1); break
            except OSError: time.sleep(0.5)
        else: pytest.fail(f'JupyterLab did not answer in 60 s: {(home / "lab.log").read_text()[-2000:]}')
        assert proc.poll() is None, f'JupyterLab exited: {(home / "lab.log").read_text()[-2000:]}'
        yield base, token
    finally:
        proc.terminate()
        try: proc.wait(10)
        except subprocess.TimeoutExpired: proc.kill()
        log.close()


def test_lab_lists_the_notebooks(lab):
    base, token = lab
    status, body = _get(f'{base}/api/contents/', token)
    names = {c['name'] for c in json.loads(body)['content']}
    chapters = {p.name for p in (ROOT / 'nbs').glob('[0-9]*.ipynb')}
    assert chapters and chapters <= names, f'missing from the listing: {chapters - names}'
    status, body = _get(f'{base}/api/contents/01_data.ipynb', token)
    assert json.loads(body)['type'] == 'notebook'
    status, page = _get(f'{base}/lab?token={token}', token)
    assert status == 200 and 'jupyter-config-data' in page


def test_lab_file_browser_in_chromium(chromium, lab, tmp_path):
    base, token = lab
    dom = chromium.dom(f'{base}/lab/tree?token={token}', tmp_path / 'profile', '--virtual-time-budget=30000',
                       '--window-size=1400,900', timeout=180)
    listed = set(re.findall(r'(\d\d_\w+\.ipynb)', dom))
    assert {'01_data.ipynb', '06_transfer.ipynb'} <= listed, f'the file browser did not list the notebooks: {sorted(listed)[:5]}'
