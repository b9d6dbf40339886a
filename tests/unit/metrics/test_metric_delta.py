import pytest

from mfed.metrics import delta_m


def test_delta_m_hand_computed_with_both_directions():
    # mIoU 50 -> 55 (higher is better): +10 %; rmse 0.5 -> 0.6 (lower is better): -20 %; mean -5 %
    scores, reference = {"mIoU": 55.0, "rmse": 0.6}, {"mIoU": 50.0, "rmse": 0.5}
    value = delta_m(scores, reference, {"mIoU": False, "rmse": True})
    assert value == pytest.approx(-5.0)


def test_delta_m_is_zero_against_itself_and_signed_for_one_metric():
    assert delta_m({"a": 3.0}, {"a": 3.0}, {"a": True}) == 0.0
    assert delta_m({"mErr": 18.0}, {"mErr": 20.0}, {"mErr": True}) == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("scores", "reference", "lower", "message"),
    [
        (
            {"a": 1.0},
            {"b": 1.0},
            {"a": False},
            r"reference must name the same metrics as scores; missing \['a'\], extra \['b'\]",
        ),
        ({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 1.0}, {"a": False}, r"lower_is_better .* missing \['b'\], extra \[\]"),
        ({"a": 1.0}, {"a": 0.0}, {"a": False}, r"reference value of \['a'\] is 0"),
        ({}, {}, {}, r"delta_m needs at least one metric"),
    ],
)
def test_delta_m_rejects_mismatched_names_and_zero_reference(scores, reference, lower, message):
    with pytest.raises(ValueError, match=message):
        delta_m(scores, reference, lower)
