"Shared fixtures: the data mirror, a local HTTP server that serves it, and headless Chromium."
import html, json, os, re, shutil, subprocess, threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]


def mirror_path() -> Path:
    "The data mirror: $EPHYS2TX_DATA, else ../shared/data beside the project."
    return Path(os.environ.get('EPHYS2TX_DATA') or ROOT.parent / 'shared' / 'data').resolve()


@pytest.fixture(scope='session')
def mirror():
    p = mirror_path()
    if not (p / 'human_leedalley2023').is_dir():
        pytest.fail(f'data mirror not found at {p}: set EPHYS2TX_DATA to the mirror folder')
    return p


class MirrorHandler(SimpleHTTPRequestHandler):
    """Serves a folder with HTTP Range support; `server.behaviour` makes it misbehave:
    {'interrupt': {path: n_times}} cuts the body in half, and records every request's Range header."""

    def log_message(self, *a): pass

    def do_GET(self):
        srv = self.server
        srv.requests.append((self.path, self.headers.get('Range')))
        path = Path(self.translate_path(self.path))
        if not path.is_file(): return self.send_error(404, 'File not found')
        data = path.read_bytes()
        start = 0
        rng = self.headers.get('Range')
        if rng and rng.startswith('bytes=') and srv.honour_range:
            start = int(rng[6:].split('-')[0])
            if start >= len(data): return self.send_error(416, 'Range not satisfiable')
            self.send_response(206)
            self.send_header('Content-Range', f'bytes {start}-{len(data)-1}/{len(data)}')
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        left = srv.interrupt.get(self.path, 0)
        if left:
            srv.interrupt[self.path] = left - 1
            self.wfile.write(body[: len(body) // 2]); self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def http_mirror(tmp_path, mirror):
    "A copy of the mirror in tmp_path, served on 127.0.0.1; yields (base_url, root, server)."
    root = tmp_path / 'served'
    shutil.copytree(mirror, root)
    for p in root.rglob('*'):
        p.chmod(0o755 if p.is_dir() else 0o644)
    srv = ThreadingHTTPServer(('127.0.0.1', 0), partial(MirrorHandler, directory=str(root)))
    srv.requests, srv.interrupt, srv.honour_range = [], {}, True
    t = threading.Thread(target=srv.serve_forever, daemon=True); t.start()
    yield f'http://127.0.0.1:{srv.server_address[1]}', root, srv
    srv.shutdown(); srv.server_close()


CHROMIUM_NAMES = ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable')
# headless, and quiet on a machine whose network is closed (no background connections, no component updates)
CHROMIUM_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync')


class Chromium:
    "Headless Chromium: `dom(url, profile, *flags)` is the DOM after load; `probe(...)` the JSON a page's probe wrote."
    def __init__(self, exe): self.exe = exe

    def dom(self, url, profile, *flags, timeout=120) -> str:
        cmd = [self.exe, *CHROMIUM_FLAGS, f'--user-data-dir={profile}', *flags, '--dump-dom', str(url)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout

    def probe(self, url, profile, *flags, timeout=120, tries=2) -> dict:
        "The report of a probe script that appended `<pre id=\"e2t-probe\">JSON</pre>` to the page."
        for _ in range(tries):   # a busy machine's Chromium may dump the DOM before the page's load: load it again
            dom = self.dom(url, profile, *flags, timeout=timeout)
            m = re.search(r'<pre id="e2t-probe">(.*?)</pre>', dom, re.S)
            if m: break
        assert m, f'the probe did not run on {url} ({tries} loads); DOM starts {dom[:300]!r}'
        return json.loads(html.unescape(m.group(1)))


@pytest.fixture(scope='session')
def chromium():
    exe = next((shutil.which(b) for b in CHROMIUM_NAMES if shutil.which(b)), None)
    if exe is None: pytest.skip('no Chromium on this machine (apt-get install chromium)')
    return Chromium(exe)
