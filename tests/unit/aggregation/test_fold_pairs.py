"""Every pair of options of the fold's config groups either folds a round or is refused in one line naming both.

The groups are the fold's stages (``aggregation``, ``defences``, ``privacy``, ``server_optimizer``);
the options are discovered from configs/, so a new strategy, rule or server optimiser is covered
the day its YAML lands. The refusals are derived from the stages' declarations
(:mod:`mfed.aggregation.contract`), not listed here.
"""

from __future__ import annotations

import itertools
import math

import pytest
from omegaconf import OmegaConf

from mfed.aggregation.fold import Pipeline
from mfed.config import config_dir, load_config
from mfed.run import build_fold
from tests.unit.aggregation import fold_cases as fc

GROUPS = ("aggregation", "defences", "privacy", "server_optimizer")
OPTIONS = {g: sorted(p.stem for p in (config_dir() / g).glob("*.yaml")) for g in GROUPS}
PAIRS = [
    ((a, x), (b, y))
    for a, b in itertools.combinations(GROUPS, 2)
    for x, y in itertools.product(OPTIONS[a], OPTIONS[b])
    if "none" not in (x, y)
]


@pytest.fixture(scope="module")
def nodes():
    """Each option's composed node (one Hydra composition per option, not per pair)."""
    base = load_config([])
    return base, {(g, o): OmegaConf.select(load_config([f"{g}={o}"]), g) for g in GROUPS for o in OPTIONS[g]}


def fold_once(fold: Pipeline) -> dict:
    if fold.privacy is not None:
        fold.privacy.bind(fold.strategy.members(fc.specs()), len(fc.CLIENTS), 1.0, fc.ROUNDS)
    model = fc.model()
    state = fold.strategy.init_state(model)
    round_ = fold.round(state, 1, fc.round_rng(1))
    for update in fc.updates(fold.strategy.targets, state, model.state_dict(), 1):
        round_.add(update)
    return round_.result()[0]


@pytest.mark.parametrize(("first", "second"), PAIRS, ids=[f"{a[0]}={a[1]},{b[0]}={b[1]}" for a, b in PAIRS])
def test_a_pair_of_fold_options_runs_a_round_or_is_refused_in_one_line(nodes, first, second):
    # Prepare: the default config with the two options in place
    base, composed = nodes
    cfg = base.copy()
    for group, option in (first, second):
        cfg[group] = composed[(group, option)]
    # Execute
    try:
        fold = build_fold(cfg)
    except ValueError as err:
        # Assert: one line, naming a key of each group
        message = str(err)
        assert "\n" not in message
        assert f"{first[0]}" in message and f"{second[0]}" in message, message
        return
    state = fold_once(fold)
    # Assert: a round's state, every tensor finite
    assert all(math.isfinite(float(t.double().sum())) for scope in state.values() for t in scope.values())


def test_the_pairs_cover_every_option():
    assert len(PAIRS) > 100
    assert {"momentum", "adam", "yogi", "adagrad"} <= set(OPTIONS["server_optimizer"])
