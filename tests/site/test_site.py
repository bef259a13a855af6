"""The built docs site (`make docs` → `_docs/`) in headless Chromium, served on a local port.

Every page reachable from the front page is loaded: its images decode, it loads nothing from the network, no
nbdev directive or `show_doc(` call shows, and every internal link lands on a page (and an anchor) that exists.
Then the API anchors, the maths, the full-text search and one linked HTML report. `make docs-test` runs this
after `make docs`; the site folder is `$EPHYS2TX_SITE` (default `_docs`)."""
import http.server, os, re, shutil, socketserver, tempfile, threading
from pathlib import Path
from urllib.parse import urlsplit, unquote
import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get('EPHYS2TX_SITE', ROOT / '_docs'))
if not any(shutil.which(b) for b in ('chromium', 'chromium-browser', 'google-chrome')):
    pytest.fail('no Chromium on this machine: apt-get install chromium', pytrace=False)   # the site test never skips
if not (SITE / 'index.html').is_file(): pytest.fail(f'{SITE}/index.html not found: run `make docs` first', pytrace=False)

# Injected into every served page: after load (and after the search or MathJax settles), what the browser made
# of the images, links, ids, stylesheets and scripts, and the text a reader sees.
PROBE = """<script>
window.addEventListener('load', () => {
  const t0 = Date.now();
  const ready = () => (!location.pathname.endsWith('search.html') ||
                       document.querySelectorAll('#search-results li').length > 0 || Date.now() - t0 > 8000);
  const report = () => {
    if (!ready()) return setTimeout(report, 100);
    const vis = e => !!(e.offsetWidth || e.offsetHeight || e.getClientRects().length);
    const r = {
      imgs: [...document.images].map(i => ({src: i.getAttribute('src'), w: i.naturalWidth, done: i.complete})),
      links: [...document.links].map(a => a.href),
      nav: [...document.querySelectorAll('.bd-sidebar-primary a')].map(a => a.href),
      ids: [...document.querySelectorAll('[id]')].map(e => e.id),
      remote: [...document.querySelectorAll('script[src],link[href],img[src],iframe[src]')]
                .map(e => e.src || e.href).filter(u => /^https?:/.test(u) && !u.startsWith(location.origin)),
      text: document.body.innerText,
      code_inputs: [...document.querySelectorAll('.jp-CodeCell .jp-InputArea, .jp-CodeCell .jp-Cell-inputWrapper, ' +
                                                 '.jp-InputPrompt, .jp-CodeMirrorEditor')].filter(vis).length,
      math: document.querySelectorAll('mjx-container').length,
      hits: document.querySelectorAll('#search-results li').length,
      html: document.documentElement.outerHTML.length,
    };
    const pre = document.createElement('pre'); pre.id = 'e2t-probe'; pre.textContent = JSON.stringify(r);
    document.body.appendChild(pre);
  };
  setTimeout(report, 1500);
});
</script>"""


class _Handler(http.server.SimpleHTTPRequestHandler):
    "Serves the site, with the probe appended to every HTML page."
    def __init__(self, *a, **k): super().__init__(*a, directory=str(SITE), **k)
    def log_message(self, *a): pass
    def send_head(self):
        path = self.translate_path(self.path)
        if not path.endswith('.html') or not os.path.isfile(path): return super().send_head()
        body = Path(path).read_bytes().replace(b'</body>', PROBE.encode() + b'</body>')
        self.send_response(200); self.send_header('Content-Type', 'text/html; charset=utf-8')
        self.send_header('Content-Length', str(len(body))); self.end_headers()
        import io; return io.BytesIO(body)


@pytest.fixture(scope='module')
def base():
    srv = socketserver.ThreadingTCPServer(('127.0.0.1', 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{srv.server_address[1]}/'
    srv.shutdown(); srv.server_close()


def load(chromium, url, tmp):
    "Open `url` in headless Chromium; the probe's report."
    return chromium.probe(url, tmp / 'profile', '--virtual-time-budget=15000')


def _local(url, base):
    "The site path of a link into the site (None for other hosts, and for the bare search form)."
    if not url.startswith(base): return None
    return unquote(urlsplit(url).path).lstrip('/') or 'index.html'


@pytest.fixture(scope='module')
def crawl(chromium, base, tmp_path_factory):
    "Every page reachable from the front page (pages only; files such as run.log are checked to exist)."
    tmp = tmp_path_factory.mktemp('chromium')
    seen, todo, pages, files = set(), ['index.html'], {}, set()
    while todo:
        p = todo.pop(0)
        if p in seen: continue
        seen.add(p)
        if not p.endswith('.html'): files.add(p); continue
        if p in ('search.html', 'genindex.html'): continue          # loaded by their own tests
        pages[p] = r = load(chromium, base + p, tmp)
        for u in r['links']:
            q = _local(u, base)
            if q and q not in seen: todo.append(q)
    return pages, files


def test_every_page_is_clean(crawl):
    pages, _ = crawl
    chapters = {'data.html', 'features.html', 'evaluation.html', 'gouwens.html', 'bilstm.html', 'transfer.html',
                'nwb.html', 'reproduce.html', 'cli.html', 'results.html'}
    assert chapters <= set(pages), f'chapters not reachable from the front page: {chapters - set(pages)}'
    for p, r in pages.items():
        assert not r['remote'], f'{p} loads from the network: {r["remote"][:3]}'
        for im in r['imgs']: assert im['done'] and im['w'] > 0, f'{p}: image {im["src"]} did not decode'
        if p.startswith('_source/'): continue                       # module source pages show the code itself
        assert '#|' not in r['text'], f'{p} shows an nbdev directive: ...{r["text"][r["text"].index("#|") - 80:][:160]!r}'
        assert 'show_doc(' not in r['text'], f'{p} shows a show_doc call'
    assert sum(len(r['imgs']) for r in pages.values()) >= 10, 'the chapters carry their figures inline'


def test_no_broken_internal_link(crawl, base):
    pages, files = crawl
    for f in files: assert (SITE / f).is_file(), f'a link points to {f}, which is not in the site'
    broken = []
    for p, r in pages.items():
        for u in r['links']:
            q = _local(u, base)
            if q is None or q == 'search.html': continue
            frag = urlsplit(u).fragment                  # a browser matches the fragment as written, then decoded
            if not (SITE / q).is_file(): broken.append((p, u)); continue
            if frag and q in pages and not {frag, unquote(frag)} & set(pages[q]['ids']): broken.append((p, u))
    assert not broken, f'{len(broken)} broken internal links, e.g. {broken[:5]}'


def test_api_entries_and_maths(crawl):
    pages, _ = crawl
    data = pages['data.html']
    for anchor in ['load_cells', 'qc', 'mouse_subclass', 'qcresult']:
        assert anchor in data['ids'], f'no API anchor #{anchor} on data.html'
    assert 'load_cells' in data['text'] and 'source' in data['text']
    src_links = [u for u in data['links'] if '/_source/data.py.html#L-' in u]
    assert src_links, 'API entries link their source'
    assert pages['bilstm.html']['math'] > 0, 'the BiLSTM chapter formulas are typeset by the local MathJax'


def test_search_finds_a_public_function(chromium, base, tmp_path):
    r = load(chromium, base + 'search.html?q=load_cells', tmp_path)
    assert r['hits'] > 0, 'a search for load_cells returns no page'
    r = load(chromium, base + 'search.html?q=zzqqxxnotaword', tmp_path)
    assert r['hits'] == 0


def test_front_page_is_the_front_door(crawl):
    "The front page says what the README says (its sections, bar the README's own link list) and lists every module."
    text = crawl[0]['index.html']['text']
    readme = (ROOT / 'README.md').read_text()
    for heading in re.findall(r'^## (.+)$', readme, flags=re.M):
        if heading != 'Documentation': assert heading in text, f'the front page has no section {heading!r}'
    assert 'What is in it' in text
    for py in sorted((ROOT / 'ephys2tx').glob('*.py')):
        if not py.name.startswith('_'): assert f'ephys2tx.{py.stem}' in text, f'chapter ephys2tx.{py.stem} missing'


def test_guides_are_reachable_from_the_sidebar(crawl, base):
    "Every Markdown page of nbs/sidebar.yml is a page, in the sidebar of the front page, a chapter, Results, a guide."
    pages, _ = crawl
    guides = re.findall(r'^\s*-\s+(\S+)\.md\s*$', (ROOT / 'nbs' / 'sidebar.yml').read_text(), flags=re.M)
    assert {'guides/findings', 'guides/extending', 'guides/environment'} <= set(guides), guides
    for g in guides:
        assert f'{g}.html' in pages, f'{g}.html is not reachable from the front page'
        assert len(pages[f'{g}.html']['text']) > 500, f'{g}.html is nearly empty'
    for p in ['index.html', 'data.html', 'results.html', f'{guides[0]}.html']:
        nav = {_local(u, base) for u in pages[p]['nav']}
        missing = [g for g in guides if f'{g}.html' not in nav]
        assert not missing, f'the sidebar of {p} does not link {missing}'
    figures = pages['guides/findings.html']['imgs']
    assert len(figures) >= 2, 'the findings carry the transfer curve and the domain-shift figure'


def test_results_page_and_a_report(chromium, crawl, base, tmp_path):
    pages, _ = crawl
    res = pages['results.html']
    reports = [u for u in res['links'] if '/results/reports/' in u and u.endswith('.html')]
    if not reports:
        assert 'make reproduce' in res['text'], 'without a run the Results page says how to make the reports'
        pytest.skip('the site was built without a reproduce run folder: no report to open')
    p = _local(reports[0], base)
    r = pages.get(p) or load(chromium, reports[0], tmp_path)
    assert r['code_inputs'] == 0, f'{p} shows code input'
    raw = (SITE / p).read_text(encoding='utf-8')
    for absolute in [str(ROOT), str(ROOT.parent) + '/', str(Path.home()) + '/', tempfile.gettempdir() + '/']:
        assert absolute not in raw, f'{p} contains the absolute path {absolute}'
