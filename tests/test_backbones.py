"""The backbone contract: a backbone registered in this test only (one class) reaches the command line, FitConfig,
training, the export's refusal and the app's Train tab, which ask its declarations and never its name."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from causalrm.cli.main import build_parser, main
from causalrm.config import FitConfig
from causalrm.errors import InputError
from causalrm.options import option
from causalrm.training.backbones.base import (
    Backbone,
    available_backbones,
    get_backbone_class,
    register_backbone,
    seeded_init,
    unregister_backbone,
)
from causalrm.training.backbones.mlp import TensorFeatures

TOY = "toyhead"


@dataclass
class ToyOptions:
    """--model is the embedder, as for the MLP head."""

    scale: float = option(1.0, help="output scale of the toy head", flag="--toy-scale")


class ToyHead(Backbone):
    """A linear reward head ``z = scale * w'x`` on frozen embeddings."""

    name = TOY
    options = ToyOptions
    label = "a linear toy head"
    app_epochs = (7, 3)

    def __init__(self, input_dim: int, scale: float = 1.0) -> None:
        super().__init__()
        self.input_dim, self.scale = int(input_dim), float(scale)
        self.linear = torch.nn.Linear(self.input_dim, 1)

    @classmethod
    def build(cls, X: Any, options: dict[str, Any], *, seed: int = 0) -> ToyHead:
        return seeded_init(seed, cls, int(np.shape(X)[1]), **options)

    def get_config(self) -> dict[str, Any]:
        return {"input_dim": self.input_dim, "scale": self.scale}

    def featurize(self, log: Any, X: Any) -> TensorFeatures:
        return X if isinstance(X, TensorFeatures) else TensorFeatures(X)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.scale * self.linear(x).squeeze(-1)


@pytest.fixture
def toy():
    register_backbone(ToyHead)
    yield ToyHead
    unregister_backbone(TOY)


def _fit_action(dest: str):
    fit = build_parser()._subparsers._group_actions[0].choices["fit"]
    return next(a for a in fit._actions if a.dest == dest)


def test_a_registered_backbone_reaches_the_command_line_and_the_config(toy):
    assert TOY in available_backbones() and get_backbone_class(TOY) is ToyHead
    assert TOY in _fit_action("backbone").help
    assert _fit_action(f"{TOY}:scale").option_strings == ["--toy-scale"]
    config = FitConfig(backbone=TOY, backbone_options={"scale": 2.5}).validate()
    argv = config.to_cli()
    assert argv == ["--backbone", TOY, "--toy-scale", "2.5"]
    args = build_parser().parse_args(["fit", "LOG", "--out", "RUN", *argv])
    assert ToyHead.options_from_args(args) == {"scale": 2.5}
    assert config.backbone_kwargs() == {"scale": 2.5}  # no FitConfig field of the MLP's (hidden) leaks in
    with pytest.raises(InputError, match="select_head compares MLP heads .* backbone mlp$"):
        config.replace(select_head=True).validate()
    unregister_backbone(TOY)
    assert TOY not in available_backbones()
    with pytest.raises(InputError, match=f"unknown backbone '{TOY}'"):
        config.validate()


def test_a_registered_backbone_trains_through_the_cli_and_refuses_export(toy, tmp_path):
    from test_pipeline import synth_log

    from causalrm.export.folder import export_run
    from causalrm.export.loading import load_reward_model

    log, X = synth_log(n=200)
    log.write_parquet(tmp_path / "log.parquet")
    np.save(tmp_path / "X.npy", X)
    fast = FitConfig(method="naive", max_epochs=3, patience=0, device="cpu", num_threads=1).to_cli()
    code = main(["fit", str(tmp_path / "log.parquet"), "--embeddings", str(tmp_path / "X.npy"), "--out",
                 str(tmp_path / "run"), "--quiet", "--backbone", TOY, "--toy-scale", "0.5", *fast])
    assert code == 0
    saved = json.loads((tmp_path / "run" / "backbone.json").read_text())
    assert saved["name"] == TOY and saved["config"]["scale"] == 0.5
    assert json.loads((tmp_path / "run" / "config.json").read_text())["fit"]["backbone_options"] == {"scale": 0.5}
    rm = load_reward_model(tmp_path / "run", device="cpu")
    assert np.isfinite(rm.score_log(log, X)).all()
    with pytest.raises(InputError, match=f"cannot export a '{TOY}' backbone yet"):
        export_run(tmp_path / "run", tmp_path / "out")


def test_a_registered_backbone_is_among_the_app_s_choices(toy):
    pytest.importorskip("gradio")
    from types import SimpleNamespace

    from app.tabs import train as T

    assert TOY in T.available_backbones()
    length, epochs, patience, select_head = T._backbone_fields(TOY)
    assert (epochs["value"], patience["value"]) == ToyHead.app_epochs
    assert length["visible"] is False and select_head["visible"] is False  # reads embeddings, one head
    mlp, lora = get_backbone_class("mlp"), get_backbone_class("lora")
    assert T._backbone_fields("lora")[0]["visible"] is True and T._backbone_fields("mlp")[3]["visible"] is True
    assert (T.EPOCHS, T.PATIENCE) == mlp.app_epochs and lora.app_epochs != mlp.app_epochs
    config = SimpleNamespace(backbone=TOY, hidden=(8,))
    assert ToyHead.head_label(config) == "–" and mlp.head_label(config) == "8"
