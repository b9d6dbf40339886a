"""The refusals are derived from declarations: a need voided by another stage, or given by none."""

import pytest

from mfed.aggregation.contract import FOLDS, MEANS, ROUTED, Declaration, bounded, check


def test_a_need_given_and_not_voided_holds():
    check([Declaration("aggregation=a", gives=ROUTED), Declaration("b=1", needs=frozenset({FOLDS}))])


def test_a_voided_need_is_refused_naming_both_keys_and_the_reason():
    stages = [
        Declaration("aggregation=a", gives=ROUTED, voids={bounded("decoder"): "soups decoders"}),
        Declaration("privacy=dp", needs=frozenset({FOLDS, bounded("decoder")})),
    ]
    with pytest.raises(ValueError) as err:
        check(stages)
    assert str(err.value) == (
        "privacy=dp cannot go with aggregation=a: it needs each client's decoder bounded once per scope, and "
        "aggregation=a soups decoders; leave one out: privacy=none, or choose another aggregation=<option>"
    )


def test_a_need_no_stage_gives_is_refused_naming_the_stage_that_says_why():
    stages = [
        Declaration("aggregation=local", lacks={FOLDS: "averages no update"}),
        Declaration("x.y=2", needs=frozenset({FOLDS})),
    ]
    refused = r"^x.y=2 cannot go with aggregation=local: .*averages no update; leave x.y out: x.y=null$"
    with pytest.raises(ValueError, match=refused):
        check(stages)


def test_the_most_basic_need_is_named_first():
    stages = [Declaration("aggregation=local"), Declaration("s=1", needs=frozenset({MEANS, bounded("encoder"), FOLDS}))]
    with pytest.raises(ValueError, match="it needs client updates routed into shared scopes"):
        check(stages)


@pytest.mark.parametrize("strategy", ["fedhca2", "fedamp", "matfl"])
@pytest.mark.parametrize(
    ("stage", "named"),
    [
        ("defences", "defences.clip_norm=1"),
        ("robust", "defences.robust=median"),
        ("privacy", "privacy=dp"),
        ("server_optimizer", "server_optimizer=momentum"),
        ("secure", "secure_aggregation=secagg_plus"),
    ],
)
def test_strategies_combining_whole_updates_refuse_every_stage_that_needs_a_mean(strategy, stage, named):
    from mfed.aggregation import FedAMP, FedHCA2, MaTFL, Pipeline
    from mfed.aggregation.defences import Defences
    from mfed.aggregation.privacy import DifferentialPrivacy
    from mfed.aggregation.server_optimizers import Momentum
    from mfed.secure.rounds import SecureAggregation

    stages = {
        "defences": {"defences": Defences(clip_norm=1.0)},
        "robust": {"defences": Defences(robust="median")},
        "privacy": {"privacy": DifferentialPrivacy(noise_multiplier=1.0, clip_norm=1.0)},
        "server_optimizer": {"server_optimizer": Momentum()},
        "secure": {"secure": SecureAggregation()},
    }[stage]
    built = {"fedhca2": FedHCA2, "fedamp": FedAMP, "matfl": MaTFL}[strategy]()
    with pytest.raises(ValueError, match=rf"{named}.*aggregation={strategy}|aggregation={strategy}.*{named}") as err:
        Pipeline(built, **stages)
    assert "\n" not in str(err.value)


def test_the_advice_to_leave_secure_aggregation_out_names_its_none_option():
    from mfed.aggregation import Pipeline
    from mfed.aggregation.fedamp import FedAMP
    from mfed.secure.rounds import SecureAggregation

    with pytest.raises(ValueError, match="secure_aggregation=none") as err:
        Pipeline(FedAMP(), secure=SecureAggregation())
    assert "secure_aggregation=null" not in str(err.value)
