"""The MLP binary classifier of the propensity model: d -> 256 -> 64 -> 1 with LeakyReLU, trained with a sigmoid
output (the CausalRM paper's propensity network; ``causalrm.nuisances.propensity.PropensityModel(model="mlp")``)."""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.model_selection import train_test_split


class _MLP(torch.nn.Module):
    def __init__(self, d: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[torch.nn.Module] = []
        prev = d
        for h in hidden:
            layers += [torch.nn.Linear(prev, h), torch.nn.LeakyReLU()]
            prev = h
        layers.append(torch.nn.Linear(prev, 1))
        self.net = torch.nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def train_binary_mlp(
    X: np.ndarray,
    y: np.ndarray,
    *,
    hidden: tuple[int, ...] = (256, 64),
    loss: str = "bce",
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 1024,
    max_epochs: int = 100,
    patience: int = 5,
    val_fraction: float = 0.1,
    sample_weight: np.ndarray | None = None,
    random_state: int = 0,
    device: str = "cpu",
) -> _MLP:
    """An MLP classifier of y from X, early-stopped on an inner stratified validation split (best epoch kept).

    ``loss="bce"`` (log loss, default) or ``"mse"`` (squared error on the sigmoid output, as in the paper); both are
    proper scoring rules, so the sigmoid output estimates P(y = 1 | x). Minibatches of ``batch_size`` on tensors.
    """
    n = len(y)
    idx = np.arange(n)
    strat = y if min(np.sum(y == 1), np.sum(y == 0)) >= 2 else None
    tr, va = train_test_split(idx, test_size=val_fraction, random_state=random_state, stratify=strat)
    dev = torch.device(device)
    Xt = torch.as_tensor(X, dtype=torch.float32, device=dev)
    yt = torch.as_tensor(y, dtype=torch.float32, device=dev)
    wt = None if sample_weight is None else torch.as_tensor(sample_weight, dtype=torch.float32, device=dev)
    tr_t = torch.as_tensor(tr, device=dev)
    va_t = torch.as_tensor(va, device=dev)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        model = _MLP(X.shape[1], tuple(hidden)).to(dev)
    gen = torch.Generator().manual_seed(random_state)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)

    def _loss(logits: torch.Tensor, target: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        if loss == "mse":
            per = (torch.sigmoid(logits) - target) ** 2
        else:
            per = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
        return per.mean() if w is None else (w * per).sum() / w.sum()

    best, best_state, bad = math.inf, None, 0
    for _ in range(max_epochs):
        model.train()
        perm = tr_t[torch.randperm(len(tr_t), generator=gen).to(dev)]
        for start in range(0, len(perm), batch_size):
            b = perm[start : start + batch_size]
            opt.zero_grad()
            _loss(model(Xt[b]), yt[b], None if wt is None else wt[b]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            val = float(_loss(model(Xt[va_t]), yt[va_t], None if wt is None else wt[va_t]))
        if val < best - 1e-6:
            best, bad = val, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad >= patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model


def predict_mlp(model: _MLP, X: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """sigmoid(model(X)) as float64."""
    dev = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, len(X), batch_size):
            xb = torch.as_tensor(X[start : start + batch_size], dtype=torch.float32, device=dev)
            out.append(torch.sigmoid(model(xb)).double().cpu().numpy())
    return np.concatenate(out)


__all__ = ["predict_mlp", "train_binary_mlp"]
