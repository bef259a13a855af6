"The README's guide to extending ephys2tx: its model example, run as written, on the human cells."
import re
from pathlib import Path
import numpy as np
import pytest

README = Path(__file__).resolve().parent.parent / 'README.md'


def guide_block(heading: str) -> str:
    "The first ```python block under `heading` in the README."
    text = README.read_text()
    assert heading in text, f'README has no section {heading!r}'
    m = re.search(r'```python\n(.*?)```', text.split(heading, 1)[1], re.S)
    assert m, f'no python example under {heading!r}'
    return m.group(1)


@pytest.fixture
def registered_knn():
    from ephys2tx import evaluation
    before = dict(evaluation.MODELS)
    exec(compile(guide_block('### Add a model'), 'README.md: Add a model', 'exec'), {})
    yield 'knn'
    evaluation.MODELS.clear(); evaluation.MODELS.update(before)


def test_the_guide_adds_a_model_with_one_registration(registered_knn, mirror):
    from ephys2tx.evaluation import list_models, load_task, make_model, run_experiment, summarize
    assert registered_knn in set(list_models().model)
    assert make_model('knn', 'human', n_neighbors=5).named_steps['clf'].n_neighbors == 5
    task = load_task('human')
    res = run_experiment(task, ['knn', 'logreg'], ['stratified'], repeats=1, folds=3, random_state=0, progress=False)
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
    exec(compile(guide_block('### Add a dataset or species'), 'README.md: Add a dataset or species', 'exec'), {})
    yield 'rat'
    for r, b in zip(regs, before): r.clear(); r.update(b)


def test_the_guide_adds_a_species_with_one_registration(registered_rat):
    from ephys2tx.cli import build_parser
    from ephys2tx.data import load_cells
    from ephys2tx.evaluation import load_task, run_experiment, task_species
    cells, res = load_cells(registered_rat, return_qc=True)
    assert len(cells) == 120 and cells.attrs['units'] == {'v_rest': 'mV', 'r_in': 'MOhm', 'rate': 'Hz'}
    assert int(res.report['cells dropped'].sum()) == 0
    assert registered_rat in task_species()
    args = build_parser('evaluate').parse_args(['evaluate', '--species', 'rat', '--model', 'rf'])
    assert args.species == 'rat'
    task = load_task(registered_rat)
    assert task.schema == 'rat' and sorted(set(task.y)) == ['Pvalb', 'Sst']
    out = run_experiment(task, ['rf', 'logreg'], ['stratified', 'grouped'], repeats=1, folds=3, random_state=0,
                         progress=False)
    assert len(out) == 12 and set(out.model) == {'rf', 'logreg'}
    assert out.macro_f1.min() > 0.8, out[['model', 'protocol', 'fold', 'macro_f1']]   # the classes differ clearly


def test_a_species_without_a_schema_is_refused():
    from ephys2tx.data import Species, load_mouse, register_species
    with pytest.raises(ValueError, match="unknown feature schema 'rat'"):
        register_species(Species('rat', None, 'rat', load_mouse))
