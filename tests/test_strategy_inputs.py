"""Every transfer strategy uses what its `fit` is given: the labels, the mouse cells, the unlabelled human cells.

For each registered strategy and each input its `fit` takes, a small task where only that input can tell the classes
apart (cells built on real Allen cells: real columns, real background features, a designed signal in aligned
features); the score with the real input must beat the score with that input corrupted by a clear margin."""
import warnings
import numpy as np, pandas as pd
import pytest, torch
from sklearn.metrics import f1_score

from ephys2tx.data import LABEL4
from ephys2tx.evaluation import fit_accepts, load_task, make_model
from ephys2tx.features import source_cells
from ephys2tx.transfer import (STRATEGIES, SHARED, NetDANN, NetZeroShot, _GradReverse, network_settings,
                               strategy_settings)

torch.set_num_threads(1)

# aligned features (negative-valued: never log-transformed) that carry the designed signal
SIGNAL = ['v_baseline', 'vm_for_sag', 'threshold_v_rheo', 'fast_trough_deltav_rheo', 'trough_deltav_rheo',
          'threshold_v_ramp', 'fast_trough_deltav_ramp', 'trough_deltav_ramp', 'threshold_v_short_square',
          'fast_trough_deltav_short_square']
LINE = dict(Lamp5=-3., Pvalb=-1., Sst=1., Vip=3.)   # class positions along one axis, in IQR units
MARGIN = 0.1                                         # least macro-F1 gain of the real input over the corrupted one
NET = dict(device='cpu', batch_size=64, pretrain_epochs=40, lr=1e-2)   # one pretraining per mouse table (memoized)


@pytest.fixture(scope='module')
def templates(mirror):
    return load_task('human', data_dir=mirror).X, source_cells(data_dir=mirror)


def _counts(n, mix):
    mix = np.asarray(mix, float) / np.sum(mix)
    c = np.floor(n * mix).astype(int)
    c[np.argsort(-(n * mix - c))[:n - c.sum()]] += 1
    return c


def cells(tpl, n, rng, mix=(1, 1, 1, 1), rule='line', noise=0.5, shift=0.0, scale=1.0, labelled=True, bare=False):
    """`n` cells of the table `tpl` (real rows drawn at random: real columns, NaN patterns, background features that
    carry no class signal since the classes are drawn anew), the `SIGNAL` features overwritten: per class, `rule`
    'line' (positions along one axis) or 'corners' (each class high on its own features), plus `shift`, Gaussian
    `noise`, in units of the template's IQR times `scale`. `labelled=False`: the labels shuffled after the fact (no
    link to the features). `bare`: every other numeric feature set to its median (nothing else to split on)."""
    y = np.repeat(LABEL4, _counts(n, mix))
    rng.shuffle(y)
    X = tpl.iloc[rng.integers(0, len(tpl), n)].reset_index(drop=True).copy()
    q = tpl[SIGNAL].quantile([0.25, 0.5, 0.75])
    k = np.array([LABEL4.index(c) for c in y])
    mu = (np.array([LINE[c] for c in y])[:, None] * np.ones(len(SIGNAL)) if rule == 'line'
          else 3.0 * (k[:, None] == np.arange(len(SIGNAL)) % 4))
    z = mu + shift + rng.normal(0, noise, (n, len(SIGNAL)))
    X[SIGNAL] = q.loc[0.5].to_numpy() + scale * (q.loc[0.75] - q.loc[0.25]).to_numpy() * z
    if bare:
        other = [c for c in tpl.select_dtypes('number').columns if c not in SIGNAL and c != 'specimen_id']
        X[other] = tpl[other].median().to_numpy()
    if not labelled: y = rng.permutation(y)
    X['label4'] = X['subclass'] = y
    X['specimen_id'] = np.arange(n) + int(rng.integers(10**6, 10**7))
    return X, np.asarray(y)


def scrambled(X, rng):
    "The same cells with each signal feature shuffled on its own: the marginals kept, the cluster structure gone."
    X = X.copy()
    for f in SIGNAL: X[f] = rng.permutation(X[f].to_numpy())
    return X


def relabelled(S, rng):
    "Mouse cells with their labels permuted."
    S = S.copy()
    S['label4'] = S['subclass'] = rng.permutation(S['label4'].to_numpy())
    return S


def model(name, **over):
    "The strategy with tiny budgets, on the CPU, with `over` on top."
    p = strategy_settings(name, network_settings(device='cpu', tiny=True), tiny=True)
    return make_model(name, 'human', 0, **{**p, **over})


def fit(m, X, y, source=None, unlabelled=None):
    "Fit with the inputs `m.fit` takes."
    kw = {k: v for k, v in [('source', source), ('unlabelled', unlabelled)] if fit_accepts(m, k)}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return m.fit(X, y, **kw)


def score(m, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return f1_score(y, m.predict(X), average='macro')


def net_kw(**kw): return dict(NET, **kw)


def forest_net(**kw): return dict(net=NetZeroShot(**NET), n_estimators=100, **kw)


# ---------------------------------------------------------------------------------------------------------------------
# The worlds: each one a labelled human training set X, y; a human test set T, yt; its corruptions.

@pytest.fixture(scope='module')
def labels_world(templates):
    """Only the labels tell: 80 labelled human cells on the line (noise 1); mouse cells whose labels are shuffled (no
    link to their features); unlabelled human cells like the test cells (no labels: no class names)."""
    H, M = templates
    rng = np.random.default_rng(10)
    X, y = cells(H, 80, rng, noise=1.0)
    T, yt = cells(H, 200, rng, noise=1.0)
    U, _ = cells(H, 200, rng, noise=1.0)
    S, _ = cells(M, 600, rng, noise=1.0, scale=1.6, labelled=False)
    return dict(X=X, y=y, T=T, yt=yt, U=U, S=S, y_bad=rng.permutation(y))


@pytest.fixture(scope='module')
def source_world(templates):
    """Only the mouse cells tell: 32 labelled human cells on the line with noise 2 in each of the ten features (too few
    for a human-only model: a forest reaches ~0.6), 600 mouse cells with the same rule on a wider scale (the species
    differ), human test and unlabelled cells that follow the rule; the corruption: the mouse labels permuted."""
    H, M = templates
    rng = np.random.default_rng(20)
    X, y = cells(H, 32, rng, noise=2.0)
    T, yt = cells(H, 200, rng, noise=2.0)
    U, _ = cells(H, 200, rng, noise=2.0)
    S, _ = cells(M, 600, rng, noise=2.0, scale=1.6)
    return dict(X=X, y=y, T=T, yt=yt, U=U, S=S, S_bad=relabelled(S, rng))


@pytest.fixture(scope='module')
def mix_world(templates, source_world):
    """Only the labels' class mix tells: the human cells are 70% Lamp5, the mouse cells balanced; standardizing the
    mouse cells at the human mix aligns the species. The corruption: labels of the same cells drawn at a balanced
    mix (a permutation would keep the mix)."""
    H, _ = templates
    rng = np.random.default_rng(30)
    mix = (7, 1, 1, 1)
    X, y = cells(H, 60, rng, mix=mix, noise=2.0)
    T, yt = cells(H, 200, rng, mix=mix, noise=2.0)
    return dict(X=X, y=y, T=T, yt=yt, S=source_world['S'], y_bad=np.repeat(LABEL4, 15)[rng.permutation(60)])


@pytest.fixture(scope='module')
def stats_world(templates, source_world):
    """Only the unlabelled cells tell where the human population lies: 16 labelled human cells shifted by 2 IQR (one
    class step) in every signal feature, like a batch recorded apart; 300 unlabelled and the test cells unshifted.
    Human statistics from the labelled cells alone misplace every test cell. The corruption: no unlabelled cells."""
    H, _ = templates
    rng = np.random.default_rng(40)
    X, y = cells(H, 16, rng, noise=2.0, shift=2.0)
    T, yt = cells(H, 200, rng, noise=2.0)
    U, _ = cells(H, 300, rng, noise=2.0)
    return dict(X=X, y=y, T=T, yt=yt, U=U, S=source_world['S'])


@pytest.fixture(scope='module')
def em_world(templates, source_world):
    """Only the unlabelled cells tell the human class mix: 12 labelled cells, balanced; 300 unlabelled cells, 70%
    Lamp5. (A score gain of `zs_em` from them is small here, 0 to 0.12 macro-F1, and with labelled cells recorded
    apart (stats_world) they hurt it: its first pass standardizes with the labelled cells alone; so the estimated mix
    is what is checked.)"""
    H, _ = templates
    rng = np.random.default_rng(60)
    X, y = cells(H, 12, rng, noise=2.0)
    U, _ = cells(H, 300, rng, noise=2.0, mix=(7, 1, 1, 1))
    return dict(X=X, y=y, U=U, S=source_world['S'])


def pseudo_worlds(H, seeds=(0, 1, 2)):
    """Pseudo-labels help: 8 labelled human cells, 400 unlabelled and 300 test cells in four overlapping clusters
    ('corners', noise 1), nothing else to split on (`bare`); three draws, as the gain of self-training varies.
    The corruptions: no unlabelled cells, or the unlabelled cells scrambled (no cluster structure)."""
    for s in seeds:
        rng = np.random.default_rng(50 + s)
        X, y = cells(H, 8, rng, rule='corners', noise=1.0, bare=True)
        T, yt = cells(H, 300, rng, rule='corners', noise=1.0, bare=True)
        U, _ = cells(H, 400, rng, rule='corners', noise=1.0, bare=True)
        yield dict(X=X, y=y, T=T, yt=yt, U=U, U_bad=scrambled(U, rng))


# ---------------------------------------------------------------------------------------------------------------------
# The checks: strategy -> input -> (how it is checked, the strategy's settings there).
# 'labels': real vs permuted labels (labels_world); 'label-free': the labels are not read (the same probabilities
# with permuted labels); 'mix': real labels vs labels at another mix (mix_world); 'source': real vs permuted mouse
# labels (source_world); 'stats': unlabelled cells vs none (stats_world); 'pseudo': unlabelled cells vs none and vs
# scrambled ones (pseudo_worlds); 'em': the class mix estimated with the unlabelled cells vs without (em_world).
LEARN = dict(epochs=30, warmup_epochs=10, finetune_lr=3e-3)      # enough updates to learn from 80 labelled cells
CHECKS = {
    'rf': dict(y=('labels', dict(n_estimators=50))),
    'hgb': dict(y=('labels', dict(max_iter=30))),
    'logreg': dict(y=('labels', {})),
    'best_human': dict(y=('labels', {})),
    'nn_human': dict(y=('labels', net_kw(**LEARN))),
    'nn_zeroshot': dict(y=('label-free', NET), source=('source', NET)),
    'nn_finetune': dict(y=('labels', net_kw(**LEARN)), source=('source', net_kw(epochs=5, warmup_epochs=5))),
    'nn_joint': dict(y=('labels', net_kw(**LEARN)), source=('source', net_kw(epochs=10))),
    'rf_mouse': dict(y=('labels', forest_net()), source=('source', forest_net())),
    'selftrain': dict(y=('labels', dict(n_estimators=100)), unlabelled=('pseudo', dict(n_estimators=100))),
    'nn_dann': dict(y=('labels', net_kw(**LEARN)), source=('source', net_kw(epochs=10)),
                    unlabelled=('stats', net_kw(epochs=10))),
    'selftrain_mouse': dict(y=('labels', forest_net()), source=('source', forest_net()),
                            unlabelled=('pseudo', forest_net(threshold=0.5))),   # outputs without signal: less sure
    'zs_pooled': dict(y=('label-free', {}), source=('source', {})),
    'zs_mix': dict(y=('mix', {}), source=('source', {})),
    'zs_em': dict(y=('label-free', {}), source=('source', {}), unlabelled=('em', {})),
    'blend_mix': dict(y=('labels', {}), source=('source', {})),
}


def inputs_of(name) -> list:
    "What the strategy's `fit` takes: the labels always, the mouse and the unlabelled cells where its signature says."
    m = make_model(name)
    return ['y'] + [k for k in ('source', 'unlabelled') if fit_accepts(m, k)]


CASES = [(n, i) for n in STRATEGIES for i in inputs_of(n)]


def test_every_input_of_every_strategy_has_a_check():
    "A strategy registered later, or a new input of an old one, fails here until it has its check."
    missing = [f'{n}.{i}' for n, i in CASES if i not in CHECKS.get(n, {})]
    assert not missing, f"no input check for {missing}: add them to CHECKS in {__file__}"
    stale = [f'{n}.{i}' for n, ins in CHECKS.items() for i in ins if (n, i) not in CASES]
    assert not stale, f"checks of inputs that no strategy's fit takes: {stale}"


def _gain(real, bad, what, margin=MARGIN):
    assert real - bad >= margin, f"{what}: macro-F1 {real:.3f} with the real input, {bad:.3f} corrupted"


@pytest.mark.parametrize('name,inp', CASES, ids=[f'{n}-{i}' for n, i in CASES])
def test_strategy_uses_its_input(name, inp, request):
    if inp not in CHECKS.get(name, {}): pytest.fail(f"{name} takes {inp!r} but has no check in CHECKS")
    kind, kw = CHECKS[name][inp]
    what = f'{name}, {inp} ({kind})'
    if kind in ('labels', 'label-free', 'mix'):
        w = request.getfixturevalue('mix_world' if kind == 'mix' else 'labels_world')
        a = fit(model(name, **kw), w['X'], w['y'], w['S'], w.get('U'))
        b = fit(model(name, **kw), w['X'], w['y_bad'], w['S'], w.get('U'))
        if kind == 'label-free':   # declared not to read the labels: nothing changes
            np.testing.assert_allclose(a.predict_proba(w['T']), b.predict_proba(w['T']), atol=1e-9, err_msg=what)
        else: _gain(score(a, w['T'], w['yt']), score(b, w['T'], w['yt']), what)
    elif kind == 'source':
        w = request.getfixturevalue('source_world')
        real = score(fit(model(name, **kw), w['X'], w['y'], w['S'], w['U']), w['T'], w['yt'])
        _gain(real, score(fit(model(name, **kw), w['X'], w['y'], w['S_bad'], w['U']), w['T'], w['yt']), what)
    elif kind == 'stats':
        w = request.getfixturevalue('stats_world')
        real = score(fit(model(name, **kw), w['X'], w['y'], w['S'], w['U']), w['T'], w['yt'])
        _gain(real, score(fit(model(name, **kw), w['X'], w['y'], w['S'], None), w['T'], w['yt']), what)
    elif kind == 'em':
        w = request.getfixturevalue('em_world')
        got = [fit(model(name, **kw), w['X'], w['y'], w['S'], u).mix_['Lamp5'] for u in (w['U'], None)]
        assert got[0] >= 0.5 and got[1] <= 0.4, f"{what}: Lamp5 fraction {got[0]:.2f} with them, {got[1]:.2f} without"
    elif kind == 'pseudo':   # the gain in macro-F1 of forest self-training varies by draw (-0.04 to +0.16): its
        S = request.getfixturevalue('labels_world')['S']     # pseudo-labels and their effect are checked instead
        w = next(pseudo_worlds(request.getfixturevalue('templates')[0], seeds=(0,)))
        m = fit(model(name, **kw), w['X'], w['y'], S, w['U'])
        n = len(w['y'])
        got, new = m.model_.transduction_[n:], m.model_.labeled_iter_[n:] > 0
        truth = np.array([LABEL4.index(c) for c in w['U']['label4']])
        assert new.sum() >= 0.25 * len(truth), f"{what}: {new.sum()} of {len(truth)} unlabelled cells pseudo-labelled"
        right = (got[new] == truth[new]).mean()
        assert right >= 0.8, f"{what}: pseudo-labels {right:.2f} right"
        P = m.predict_proba(w['T'])
        for u in (None, w['U_bad']):
            d = np.abs(P - fit(model(name, **kw), w['X'], w['y'], S, u).predict_proba(w['T'])).mean()
            assert d > 0.02, f"{what}: the probabilities move by {d:.3f} on average without the real unlabelled cells"
    else: pytest.fail(f'unknown check {kind!r}')


# ---------------------------------------------------------------------------------------------------------------------
# nn_dann: the gradient reversal reverses.

def test_grad_reverse_backward_is_minus_lambda_times_the_gradient():
    x = torch.randn(5, 3, requires_grad=True)
    g = torch.randn(5, 3)
    out = _GradReverse.apply(x, 0.3)
    torch.testing.assert_close(out, x)                          # forward: the identity
    out.backward(g)
    torch.testing.assert_close(x.grad, -0.3 * g)


def test_dann_encoder_gets_the_reversed_domain_gradient(labels_world, monkeypatch):
    """Inside `NetDANN.fit`: the domain loss's gradient reaches the encoder reversed and scaled by `adv_weight`, and the
    discriminator unreversed (it learns to tell mouse from human while the encoder unlearns it)."""
    seen = {}
    train = NetDANN._train
    def spy(self, tasks, params, epochs, lr, aux_loss=None):
        seen.update(net=self.net_, tasks=tasks, aux=aux_loss)
        return train(self, tasks, params, 1, lr, aux_loss)
    monkeypatch.setattr(NetDANN, '_train', spy)
    w = labels_world
    fit(model('nn_dann', **net_kw(adv_weight=0.7)), w['X'], w['y'], w['S'], w['U'])
    net, tasks, aux = seen['net'], seen['tasks'], seen['aux']
    assert aux is not None and len(tasks) == 3           # labelled human, mouse, unlabelled human
    net.eval()
    def grads(reverse: bool):
        net.zero_grad()
        zs = [net(t.values[:20], t.obs[:20], t.fam[:20], head=t.head)[1] for t in tasks]
        if reverse: loss = aux(zs)
        else:
            z = torch.cat([zs[1], zs[0], zs[2]]).float()
            d = torch.cat([torch.zeros(20), torch.ones(40)])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net.domain(z).squeeze(1), d)
        loss.backward()
        return {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}
    rev, plain = grads(True), grads(False)
    enc = [k for k in plain if k.startswith('seq.') and plain[k].abs().max() > 0]
    dom = [k for k in plain if k.startswith('domain.')]
    assert enc and dom
    for k in enc: torch.testing.assert_close(rev[k], -0.7 * plain[k], rtol=1e-4, atol=1e-7, msg=k)
    for k in dom: torch.testing.assert_close(rev[k], plain[k], rtol=1e-4, atol=1e-7, msg=k)
