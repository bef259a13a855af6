"The documentation's code, run as written: the extending guide's model and species examples, the README's quick start."
import re
from pathlib import Path
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / 'nbs' / 'guides' / 'extending.md'
README = ROOT / 'README.md'


def guide_block(heading: str, doc: Path = GUIDE) -> str:
    "The first ```python block under `heading` in `doc` (the extending guide unless told)."
    text = doc.read_text()
    assert heading in text, f'{doc.name} has no section {heading!r}'
    m = re.search(r'```python\n(.*?)```', text.split(heading, 1)[1], re.S)
    assert m, f'no python example under {heading!r}'
    return m.group(1)


@pytest.fixture
def registered_knn():
    from ephys2tx import evaluation
    before = dict(evaluation.MODELS)
    exec(compile(guide_block('## Add a model'), 'extending.md: Add a model', 'exec'), {})
    yield 'knn'
    evaluation.MODELS.clear(); evaluation.MODELS.update(before)


def test_the_guide_adds_a_model_with_one_registration(registered_knn, mirror):
    from ephys2tx.evaluation import Executor, Protocol, list_models, load_task, make_model, run_experiment, summarize
    assert registered_knn in set(list_models().model)
    assert make_model('knn', 'human', n_neighbors=5).named_steps['clf'].n_neighbors == 5
    task = load_task('human')
    res = run_experiment(task, ['knn', 'logreg'], Protocol(repeats=1, folds=3), Executor(progress=False))
    assert set(res.model) == {'knn', 'logreg'} and len(res) == 6
    knn = res[res.model == 'knn']
    # four classes: chance macro-F1 is about 0.25; nearest neighbours on these features do far better
    assert knn.macro_f1.min() > 0.45, summarize(res)
    assert np.isfinite(knn.log_loss).all()


def test_an_unknown_model_is_named(registered_knn):
    from ephys2tx.evaluation import make_model
    with pytest.raises(ValueError, match="unknown model 'knn2'"):
        make_model('knn2')


@pytest.fixture
def registered_rat():
    "The guide's species example, run as written; the registries are restored afterwards."
    from ephys2tx import data, schema
    regs = (data.SPECIES, schema.SCHEMAS, schema.EXCLUDED_FEATURES, schema.EXCLUDED)
    before = [dict(r) for r in regs]
    exec(compile(guide_block('## Add a dataset or species'), 'extending.md: Add a dataset or species', 'exec'), {})
    yield 'rat'
    for r, b in zip(regs, before): r.clear(); r.update(b)


def test_the_guide_adds_a_species_with_one_registration(registered_rat):
    from ephys2tx.cli import build_parser
    from ephys2tx.data import load_cells
    from ephys2tx.evaluation import BOTH_PROTOCOLS, Executor, load_task, run_experiment, task_species
    cells, res = load_cells(registered_rat, return_qc=True)
    assert len(cells) == 120 and cells.attrs['units'] == {'v_rest': 'mV', 'r_in': 'MOhm', 'rate': 'Hz'}
    assert int(res.report['cells dropped'].sum()) == 0
    assert registered_rat in task_species()
    args = build_parser('evaluate').parse_args(['evaluate', '--species', 'rat', '--model', 'rf'])
    assert args.species == 'rat'
    task = load_task(registered_rat)
    assert task.schema == 'rat' and sorted(set(task.y)) == ['Pvalb', 'Sst']
    out = run_experiment(task, ['rf', 'logreg'], [p.replace(repeats=1, folds=3) for p in BOTH_PROTOCOLS],
                         Executor(progress=False))
    assert len(out) == 12 and set(out.model) == {'rf', 'logreg'}
    assert out.macro_f1.min() > 0.8, out[['model', 'protocol', 'fold', 'macro_f1']]   # the classes differ clearly


def test_a_species_without_a_schema_is_refused():
    from ephys2tx.data import Species, load_mouse, register_species
    with pytest.raises(ValueError, match="unknown feature schema 'rat'"):
        register_species(Species('rat', None, 'rat', load_mouse))


def test_the_readme_quick_start_runs_as_written(mirror, tmp_path, monkeypatch, capsys):
    """The README's Python quick start, executed as it stands on the mirror's cells. Only the named model behind
    `model='human'` is a 250-tree forest here instead of the model of record (whose first build takes minutes and
    which tests/test_predictor.py builds); the cache is a fresh folder, so the build on first use runs too."""
    from ephys2tx import predictor
    monkeypatch.setenv('EPHYS2TX_DATA', str(mirror))
    monkeypatch.setenv('EPHYS2TX_CACHE', str(tmp_path / 'cache'))
    monkeypatch.setitem(predictor.NAMED_MODELS, 'human', dict(species='human', model='rf', random_state=0))
    ns = {}
    exec(compile(guide_block('## Quick start in Python', README), 'README.md: Quick start in Python', 'exec'), ns)
    pred, res = ns['pred'], ns['res']
    assert len(pred) == 20 and (pred.status == 'ok').all()
    assert set(pred.predicted_subclass) <= {'Lamp5', 'Pvalb', 'Sst', 'Vip'}
    assert np.allclose(pred.filter(like='prob_').sum(axis=1), 1)
    assert predictor.named_path('human').is_dir(), 'the named model was built on first use and cached'
    assert len(res) == 6 and set(res.model) == {'rf', 'logreg'}
    assert res.macro_f1.min() > 0.6, res[['model', 'fold', 'macro_f1']]   # four classes: chance is about 0.25
    out = capsys.readouterr().out
    assert 'predicted_subclass' in out and 'logreg' in out
