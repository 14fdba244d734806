"""The ranking head (issue 25; docs/METHOD.md "Ranking under noise"): early stopping on a ranking criterion, the
standardised head folded into a plain one, the weight-decay grid chosen on the IPS-weighted noisy-val AUROC, and
auto's step 6 (a qualifying ranking-head candidate that ranks better on val replaces the calibration choice)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from causalrm.config import RANKING_DECAYS, RANKING_HEAD, FitConfig
from causalrm.data import schema
from causalrm.devices import cpu_threads
from causalrm.errors import InputError
from causalrm.estimators.losses import LossInputs
from causalrm.training.backbones.mlp import MLPBackbone, TensorFeatures
from causalrm.training.options import TrainConfig
from causalrm.training.trainer import train
from causalrm.workflows.orchestrate import fit_log
from causalrm.workflows.selection import pick
from tests.test_gates import fast, strong_log


def _toy(n: int = 300, d: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n, d)) * np.arange(1, d + 1) + 3.0).astype(np.float32)  # unequal scales, off centre
    y = (X[:, 0] - 3 + rng.normal(size=n) > 0).astype(np.float32)
    inputs = LossInputs(feedback=y, observed=np.ones(n, dtype=np.float32))
    return X, y, inputs


def test_standardised_head_folds_into_a_plain_one_with_the_same_scores():
    X, _, _ = _toy()
    head = MLPBackbone.build(X, {"hidden": [4], "standardize": True}, seed=0)
    assert torch.equal(head.net[-1].weight, torch.zeros_like(head.net[-1].weight))  # z = 0 at the start
    np.testing.assert_allclose(head.x_mean.numpy(), X.mean(0), rtol=1e-5)
    np.testing.assert_allclose(head.x_sd.numpy(), X.std(0), rtol=1e-4)
    with torch.no_grad():
        head.net[-1].weight.normal_()
        x = torch.as_tensor(X[:20])
        reference = head.net((x - torch.as_tensor(X.mean(0))) / torch.as_tensor(X.std(0))).squeeze(-1)
        before = head(x)
        head.after_training()
        after = head(x)
    torch.testing.assert_close(before, reference, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)
    assert not head.standardize and "x_mean" not in head.state_dict()
    plain = MLPBackbone.from_config(head.get_config())  # a saved run rebuilds as a plain MLP
    plain.load_saved_state(head.state_for_save())
    torch.testing.assert_close(plain(x), after)


def test_stopping_on_ranking_keeps_the_epoch_of_the_best_criterion():
    X, y, inputs = _toy()
    feats = TensorFeatures(X)
    seen: list[float] = []

    def criterion(z: np.ndarray) -> float:  # a criterion that peaks at the third epoch, whatever the model does
        seen.append(float(z.mean()))
        return -abs(len(seen) - 3)

    head = MLPBackbone.build(X, {"hidden": [], "standardize": True}, seed=0)
    cfg = TrainConfig(method="naive", base_loss="bce", lr=0.05, batch_size=10_000, max_epochs=8, patience=None,
                      stop_on="ranking", device="cpu")
    history = train(head, feats, inputs, feats, inputs, cfg, val_criterion=criterion)
    assert history.epochs == 8 and history.best_epoch == 3 and history.best_val_ranking == 0
    assert history.val_ranking == [-2, -1, 0, -1, -2, -3, -4, -5]
    assert history.best_val_estimate == history.val_estimate[2]
    with pytest.raises(InputError, match="val_criterion"):
        train(head, feats, inputs, feats, inputs, cfg)


@pytest.fixture(scope="module")
def ranked():
    with cpu_threads(1):
        log, X = strong_log(n=2000)
        return log, X, fit_log(log, X, fast(method="fcorr-rank", max_epochs=40, rho01=0.2, rho10=0.1))


def test_the_ranking_head_is_chosen_on_the_ips_weighted_val_auroc(ranked):
    log, _, result = ranked
    sel = result.selection
    assert [c["weight_decay"] for c in sel["candidates"]] == list(RANKING_DECAYS)
    values = [c["best_val_ranking"] for c in sel["candidates"]]
    assert sel["chosen"] == int(np.argmax(values)) and "AUROC" in sel["criterion"]
    cfg = result.config
    assert cfg.hidden == () and cfg.standardize and cfg.stop_on == "ranking" and cfg.lr == RANKING_HEAD["lr"]
    assert cfg.max_epochs == 40 and cfg.weight_decay == RANKING_DECAYS[sel["chosen"]]
    # the recorded criterion is the AUROC against the noisy val feedback weighted by 1 / p, as scikit-learn has it
    nuis = result.nuisances
    val_rows = nuis.rows[nuis.split == schema.VAL]
    observed = log[schema.OBSERVED].to_numpy()[val_rows] == 1
    r = log[schema.FEEDBACK].to_numpy()[val_rows][observed]
    assert nuis.propensity_clipped is None  # fcorr-rank alone needs no propensity: uniform weights
    want = roc_auc_score(r, result.val_logits[observed])
    assert result.history.best_val_ranking == pytest.approx(want, abs=1e-6)


def test_a_ranking_method_needs_a_head_on_frozen_embeddings():
    with pytest.raises(InputError, match="ranking head"):
        FitConfig(method="naive-rank", backbone="lora").validate()
    with pytest.raises(InputError, match="standardize"):
        FitConfig(standardize=True, backbone="lora").validate()


def test_auto_prefers_a_qualifying_ranking_head_that_ranks_better_on_val():
    record = {"naive": {"fitted": True, "learned": True, "beats_baseline": False, "central": 0.3, "val_auroc": 0.70},
              "causalrm-ips": {"fitted": True, "learned": True, "beats_baseline": True, "central": 0.1,
                               "val_auroc": 0.75},
              "fcorr-rank": {"fitted": True, "learned": True, "beats_baseline": True, "central": 0.2,
                             "val_auroc": 0.78}}
    assert pick(record, "central") == "fcorr-rank"
    record["fcorr-rank"]["val_auroc"] = 0.74  # ranks worse than the calibration choice: calibration decides
    assert pick(record, "central") == "causalrm-ips"
    record["fcorr-rank"].update(val_auroc=0.9, beats_baseline=False)  # must qualify like any candidate
    assert pick(record, "central") == "causalrm-ips"
