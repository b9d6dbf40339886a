"""A client speaks only for itself: the serial backend attributes each message to the client it called."""

import dataclasses

import pytest
import torch

from mfed.federation.backends import SerialBackend, attributed
from mfed.run import build
from mfed.types import ClientFailure, ClientUpdate
from tests.unit.federation.test_faults import BAD, run_tampered, without_bad


class Impersonating(SerialBackend):
    """The serial backend with one client whose own code labels its messages as ``claimed``'s (below the backend)."""

    def __init__(self, liar: str, claimed: str) -> None:
        super().__init__()
        self.liar, self.claimed = liar, claimed

    def start(self, specs, setup):
        super().start(specs, setup)
        client = self.clients[self.liar]
        fit, evaluate = client.fit, client.evaluate
        client.fit = lambda *args: dataclasses.replace(fit(*args), client_id=self.claimed)
        client.evaluate = lambda *args: dataclasses.replace(evaluate(*args), client_id=self.claimed)


def test_a_message_is_the_called_clients_whatever_id_it_claims():
    # Prepare: an update that claims another id, and one that names its own
    update = ClientUpdate("a", ("seg",), 1, {}, {})
    # Execute / Assert
    assert attributed("a", update) is update
    failure = attributed("b", update)
    assert isinstance(failure, ClientFailure) and (failure.client_id, failure.kind) == ("b", "rejected")
    assert "claims to be client 'a'" in failure.reason and "call made for 'b'" in failure.reason
    assert attributed("b", object()).kind == "rejected"  # a message with no id at all


@pytest.mark.parametrize(
    "claimed",
    [
        "edges-0",  # the other client of its task: same tasks, so it would pass every check as edges-0's
        "semseg-0",  # a client of another task, claimed with its own tasks
    ],
)
def test_an_update_claiming_another_clients_id_is_rejected_and_the_real_one_kept(tiny_cfg, claimed):
    # Prepare: the reference is the run without the liar's update at all
    reference = run_tampered(tiny_cfg, without_bad, rounds=2)
    driver = build(tiny_cfg("federation.rounds=2"))
    driver.backend = Impersonating(BAD, claimed)
    # Execute
    history = driver.run()
    # Assert: only the liar is at fault, named with the id it claimed, in training and evaluation
    assert {(f.round, f.client_id, f.kind) for f in driver.faults} == {(1, BAD, "rejected"), (2, BAD, "rejected")}
    assert all(f"claims to be client {claimed!r}" in f.reason and repr(BAD) in f.reason for f in driver.faults)
    assert any(f.reason.startswith("val evaluation: ") for f in driver.faults)
    # the claimed client's own update and evaluation count, once
    assert [row["comm/clients"] for row in history] == [5.0, 5.0]
    assert all(f"client/{claimed}/train_loss" in row for row in history)
    assert f"client/{BAD}/train_loss" not in history[-1]
    assert driver.status == "completed"
    # the global state is the one without the liar, bit for bit
    for scope, tensors in reference.state.items():
        for key, value in tensors.items():
            torch.testing.assert_close(driver.state[scope][key], value, rtol=0, atol=0)
