import math

import pytest
import torch

from mfed.federation.validation import Screen, check_update, expected_layout, nonfinite_scopes
from mfed.types import ClientSpec, ClientUpdate

MODEL = {
    "encoder.w": torch.zeros(2, 3),
    "encoder.bn.num_batches_tracked": torch.tensor(0),
    "decoders.seg.w": torch.zeros(4),
    "decoders.depth.w": torch.zeros(1),
}
LAYOUT = expected_layout(MODEL, ["encoder.", "decoders.seg."])
SPEC = ClientSpec("seg-0", "seg", (0, 1), (2,), 0)


def good(**changes) -> ClientUpdate:
    fields = {
        "client_id": "seg-0",
        "tasks": ("seg",),
        "num_examples": 2,
        "state": {k: v.clone() for k, v in MODEL.items() if not k.startswith("decoders.depth.")},
        "metrics": {"loss": 0.5},
    }
    return ClientUpdate(**{**fields, **changes})


def with_state(**tensors) -> ClientUpdate:
    update = good()
    return good(state={**update.state, **{k.replace("__", "."): v for k, v in tensors.items()}})


def test_the_layout_is_the_uploaded_part_of_the_model():
    assert set(LAYOUT) == {"encoder.w", "encoder.bn.num_batches_tracked", "decoders.seg.w"}
    assert expected_layout(MODEL, []) == {}  # Local uploads nothing


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        (good(client_id="seg-1"), "claims to be client 'seg-1'"),
        (good(tasks="depth"), r"claims tasks \['depth'\] but the client holds \['seg'\]"),
        (good(tasks=("seg", "depth")), r"claims tasks \['seg', 'depth'\] but the client holds \['seg'\]"),
        (good(num_examples=0), "example count 0 is not a positive integer"),
        (good(num_examples=math.nan), "example count nan is not a positive integer"),
        (good(num_examples=True), "example count True is not a positive integer"),
        (good(metrics={"loss": math.inf}), "non-finite or non-numeric training loss inf"),
        (good(metrics={"loss": "low"}), "non-finite or non-numeric training loss 'low'"),
        (good(num_examples=10**9), "claims 1000000000 examples but its shard holds 2"),
        (with_state(encoder__w=torch.zeros(3, 2)), r"encoder.w is \(3, 2\) torch.float32, expected \(2, 3\)"),
        (with_state(encoder__w=torch.zeros(2, 3, dtype=torch.float64)), "torch.float64, expected"),
        (with_state(decoders__depth__w=torch.zeros(1)), "unexpected decoders.depth.w"),
        (good(state={"encoder.w": torch.zeros(2, 3)}), "missing decoders.seg.w, encoder.bn.num_batches_tracked"),
        (with_state(encoder__w=torch.tensor([[0.0, math.nan, 1.0], [math.inf, 0, 0]])), "2 non-finite values"),
    ],
)
def test_each_bad_update_is_named(update, reason):
    problem = check_update(update, SPEC, LAYOUT)
    assert problem is not None
    assert __import__("re").search(reason, problem), problem


def test_a_good_update_passes():
    assert check_update(good(), SPEC, LAYOUT) is None


def test_private_state_is_checked_like_the_shared_one():
    kept = expected_layout(MODEL, ["decoders.seg."])
    assert check_update(good(private={"decoders.seg.w": torch.zeros(4)}), SPEC, LAYOUT, kept) is None
    bad = good(private={"decoders.seg.w": torch.full((4,), math.nan)})
    assert check_update(bad, SPEC, LAYOUT, kept) == "private state: 4 non-finite values in decoders.seg.w"
    assert "private state: keys differ" in check_update(good(private={}), SPEC, LAYOUT, kept)


def test_screening_rejects_duplicates_and_strangers():
    other = ClientSpec("seg-1", "seg", (3, 5), (4,), 1)
    screen = Screen({"seg-0": SPEC, "seg-1": other}, {"seg-0": (LAYOUT, {}), "seg-1": (LAYOUT, {})}, round_idx=3)
    updates = [good(), good(client_id="seg-1"), good(), good(client_id="depth-9", tasks="depth")]
    verdicts = [screen(u) for u in updates]
    assert verdicts[:2] == [None, None]
    assert [(f.round, f.client_id, f.reason) for f in verdicts[2:]] == [
        (3, "seg-0", "sent a second update this round"),
        (3, "depth-9", "was not sampled this round"),
    ]


def test_nonfinite_scopes_names_the_scope():
    state = {"global": {"encoder.w": torch.ones(2)}, "task:seg": {"decoders.seg.w": torch.tensor([1.0, math.nan])}}
    assert nonfinite_scopes(state) == ["task:seg"]
