"""Open the generated index.html and a report in headless Chromium: figures load, the headline table has numbers.

Skipped (with the reason) only where no Chromium is installed; `.ci/run` installs Debian's `chromium`."""
import re, tempfile
from pathlib import Path
import pytest
import ephys2tx.reproduce as R

CHECKOUT = Path(R.__file__).resolve().parents[1]     # the source checkout (its parent: where it was cloned)


# What shows a code cell's input in nbconvert's lab template (markdown cells reuse the wrapper classes, so only
# those inside a code cell count), and the input prompts.
INPUT_SELECTOR = ('.jp-CodeCell .jp-Cell-inputWrapper, .jp-CodeCell .jp-InputArea, .jp-InputArea-editor, '
                  '.jp-CodeMirrorEditor, .jp-InputPrompt')

# Runs in the page after load: what the browser made of every <img>, of the headline table, and what it shows as text.
PROBE = """<script>
const INPUT_SELECTOR = '""" + INPUT_SELECTOR + """';
window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => ({data: i.src.startsWith('data:'), len: i.src.length,
                                              complete: i.complete, w: i.naturalWidth, h: i.naturalHeight}));
  const head = document.getElementById('headline');
  const rows = head ? [...head.tBodies[0].rows].map(r => [...r.cells].map(c => c.textContent.trim())) : null;
  const cols = head ? [...head.tHead.rows[0].cells].map(c => c.textContent.trim()) : null;
  const links = [...document.links].map(a => a.getAttribute('href'));
  // code inputs the reader can see: an element with a box, not hidden (a folded <details> gives its content no box)
  const inputs = [...document.querySelectorAll(INPUT_SELECTOR)]
    .filter(e => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden')
    .map(e => e.className + ': ' + e.textContent.trim().slice(0, 80));
  const code_cells = document.querySelectorAll('.jp-CodeCell').length;
  const text = document.body.innerText;
  const pre = document.createElement('pre'); pre.id = 'e2t-probe';
  pre.textContent = JSON.stringify({imgs, rows, cols, links, inputs, code_cells, text,
                                    tables: document.getElementsByTagName('table').length});
  document.body.appendChild(pre);
});
</script>"""


def probe(chromium, page: Path, tmp: Path) -> dict:
    "Load a copy of `page` (same folder, so relative links hold) with the probe, in headless Chromium; its report."
    probed = page.with_name(page.stem + '.probe.html')
    probed.write_text(page.read_text(encoding='utf-8').replace('</body>', PROBE + '</body>'), encoding='utf-8')
    try: return chromium.probe(probed.as_uri(), tmp / f'chromium-profile-{page.stem}', '--virtual-time-budget=10000')
    finally: probed.unlink()


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory, mirror):
    out = tmp_path_factory.mktemp('reproduce')
    R.reproduce(out=out, quick=True, stages='data', data_dir=mirror, progress=False, echo=False)
    return out


def test_report_figures_load(chromium, run_dir, tmp_path):
    p = probe(chromium, run_dir / 'reports' / 'data_qc.html', tmp_path)
    assert len(p['imgs']) >= 2, 'the data & QC report has a class-count and a missingness figure'
    for im in p['imgs']:
        assert im['data'] and im['len'] > 1000, 'figures are embedded as data: URIs'
        assert im['complete'] and im['w'] > 100 and im['h'] > 100, f'figure did not decode: {im}'
    assert p['tables'] >= 5                                   # QC report, drops, counts, label4, missingness


def test_index_headline_and_links(chromium, run_dir, tmp_path):
    p = probe(chromium, run_dir / 'index.html', tmp_path)
    assert p['cols'][:3] == ['result', 'species', 'cells']
    rows = {r[0]: r for r in p['rows']}
    assert set(rows) == {'mouse', 'human', 'transfer'}
    for name in ['mouse', 'human']:
        assert re.fullmatch(r'\d+', rows[name][2]) and int(rows[name][2]) > 100, rows[name]
    for r in p['rows']:                                        # a macro F1 cell is a number ± SD, or pending
        assert re.fullmatch(r'\d\.\d{3} ± \d\.\d{3}|—', r[4]), r
    assert 'reports/data_qc.html' in p['links'] and (run_dir / 'reports' / 'data_qc.html').is_file()
    assert 'run.log' in p['links'] and (run_dir / 'run.log').is_file()


def test_report_shows_no_code_and_no_machine_paths(chromium, run_dir, tmp_path, mirror):
    "A report shows its outputs only: no code input is displayed, and no absolute path of the machine is in the page."
    page = run_dir / 'reports' / 'data_qc.html'
    p = probe(chromium, page, tmp_path)
    assert p['code_cells'] >= 5, 'the code cells are in the page (their outputs are shown), only their input is hidden'
    assert p['inputs'] == [], f"code input is visible: {p['inputs'][:3]}"
    for code in ['read_result(', 'display(', 'plt.subplots(', 'out_dir = ']:
        assert code not in p['text'], f'{code!r} is visible in the report'
    t = p['text']                                   # title, opening sentences, the parameters table, then the sections
    assert t.index('Report: data and quality control') < t.index('After QC, ') < t.index('Parameters of this run') \
        < t.index('The QC steps')
    html = page.read_text(encoding='utf-8')
    assert 'celltag_parameters' not in html and 'celltag_injected-parameters' not in html
    text = re.sub(r'data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+', '', html)    # figures: base64 may spell anything
    for path in {str(run_dir), str(run_dir.resolve()), str(mirror), str(Path(mirror).resolve()),
                 str(CHECKOUT.parent) + '/', tempfile.gettempdir() + '/'}:
        assert path not in text, f'{path} appears in {page.name}'
    home = str(Path.home())
    if home != '/': assert not re.search(rf'(?<![\w.-]){re.escape(home)}(?![\w.-])', text), f'{home} appears in {page.name}'
