"The model of record: the vote reads its candidates, calibration and conformal sets do what they claim."
import warnings
import numpy as np, pandas as pd
import pytest
from ephys2tx.record import (CalibratedVote, ProbaTable, choose_calibration, class_thresholds, conformity_scores,
                             prediction_sets, vote_weights)
from ephys2tx.evaluation import expected_calibration_error

CLASSES = np.array(['Lamp5', 'Pvalb', 'Sst', 'Vip'])


def _probs(n, sharp, acc, seed):
    "Labels and probabilities of a model that is right with chance `acc`, over-confident by `sharp`."
    rng = np.random.RandomState(seed)
    y = CLASSES[rng.randint(0, 4, n)]
    guess = np.where(rng.rand(n) < acc, np.searchsorted(CLASSES, y), rng.randint(0, 4, n))
    L = rng.normal(0, 1, (n, 4))
    L[np.arange(n), guess] += 2.0
    P = np.exp(sharp * L)
    return y, P / P.sum(1, keepdims=True)


def test_vote_weights_follow_the_informative_model():
    y, good = _probs(600, 1, 0.9, 0)
    rng = np.random.RandomState(1)
    noise = rng.dirichlet(np.ones(4), 600)
    w, table = vote_weights({'noise': noise, 'good': good}, y, CLASSES)
    assert w['good'] >= 5 / 6 and w['noise'] <= 1 / 6
    w2, _ = vote_weights({'noise': good, 'good': noise}, y, CLASSES)   # names swapped: the weight follows the data
    assert w2['noise'] >= 5 / 6


def test_calibration_tames_an_over_confident_model():
    y, P = _probs(1500, 4, 0.7, 2)
    yt, Pt = _probs(1500, 4, 0.7, 3)
    method, cal, scores = choose_calibration(P, y, CLASSES)
    assert method != 'none' and scores[method] < scores['none']
    assert expected_calibration_error(yt, cal.predict_proba(Pt), CLASSES) < \
        0.5 * expected_calibration_error(yt, Pt, CLASSES)


def test_calibration_left_alone_when_already_calibrated():
    "Probabilities drawn from the model they claim: no method may do clearly better than none."
    rng = np.random.RandomState(4)
    P = rng.dirichlet(np.ones(4) * 0.7, 3000)
    y = CLASSES[[rng.choice(4, p=p) for p in P]]
    method, cal, scores = choose_calibration(P, y, CLASSES)
    assert scores['none'] <= min(scores.values()) + 0.01


def test_class_conditional_coverage_on_held_out_cells():
    "Thresholds from one sample cover each class of a fresh sample at about the wanted rate."
    y, P = _probs(4000, 1, 0.6, 5)
    yt, Pt = _probs(4000, 1, 0.6, 6)
    for cov in (0.8, 0.9):
        S = prediction_sets(Pt, class_thresholds(conformity_scores(P, y, CLASSES), cov))
        hit = S[np.arange(len(yt)), np.searchsorted(CLASSES, yt)]
        for c in CLASSES:
            assert abs(hit[yt == c].mean() - cov) < 0.04, (c, cov, hit[yt == c].mean())


def test_sets_match_mapie_split_conformal_per_class():
    "Each class's membership equals MAPIE's split-conformal LAC set calibrated on the cells of that class."
    from mapie.classification import SplitConformalClassifier
    y, P = _probs(800, 1, 0.6, 7)
    _, Pt = _probs(300, 1, 0.6, 8)
    ours = prediction_sets(Pt, class_thresholds(conformity_scores(P, y, CLASSES), 0.9))
    for j, c in enumerate(CLASSES):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            m = SplitConformalClassifier(ProbaTable(list(CLASSES)).fit(), confidence_level=0.9, conformity_score='lac',
                                         prefit=True).conformalize(P[y == c], y[y == c])
            theirs = m.predict_set(Pt)[1][:, j, 0]
        top = Pt.argmax(1) == j                     # ours always holds the most probable class
        assert (ours[~top, j] == theirs[~top]).all()
        assert (ours[top, j] | ~theirs[top]).all()


def test_record_reads_its_training_cells(mirror):
    "Fitted on labels shuffled across cells, the vote scores at chance; on the true labels, far above."
    from ephys2tx.data import load_cells
    from sklearn.metrics import f1_score
    cells = load_cells('human', data_dir=mirror, progress=False)
    y = cells['subclass'].to_numpy()
    tr = np.random.RandomState(0).rand(len(cells)) < 0.7
    small = dict(candidates=('rf', 'logreg'), params=dict(rf=dict(n_estimators=30)))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        true = CalibratedVote(**small).fit(cells[tr], y[tr])
        shuffled = CalibratedVote(**small).fit(cells[tr], np.random.RandomState(1).permutation(y[tr]))
        f_true = f1_score(y[~tr], true.predict(cells[~tr]), average='macro')
        f_shuf = f1_score(y[~tr], shuffled.predict(cells[~tr]), average='macro')
    assert f_true > 0.7 and f_shuf < 0.45, (f_true, f_shuf)
    m = true.test_metrics(cells[~tr], y[~tr])
    assert 0.75 < m['coverage'] <= 1 and m['set_size'] < 2.5
