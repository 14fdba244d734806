"""app/plots.py: the proxy-score plot's quantile labels stay readable."""

from __future__ import annotations

import numpy as np
import pytest

from app import plots


@pytest.mark.parametrize("lower,upper", [(0.30, 0.32), (0.05, 0.95), (0.6, 0.61)])
def test_the_two_quantile_labels_never_overlap(lower, upper):
    fig = plots.proxy_scores(np.linspace(0, 1, 50), lower=lower, upper=upper, quantile=0.97)
    labels = [a for a in fig.layout.annotations if "quantile" in a.text]
    assert len(labels) == 2 and {a.x for a in labels} == {lower, upper}
    plot_height = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
    font = max(a.font.size or 12 for a in labels)
    # on separate rows at least one line of text (with padding) apart, whatever the distance of the lines
    assert abs(labels[0].y - labels[1].y) * plot_height >= 1.5 * font
    assert all(a.yref == "paper" and 0 < a.y <= 1 and a.yanchor == "top" for a in labels)
