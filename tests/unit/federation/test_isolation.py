"""A client loads only its scopes, and those hold nothing of another task or another client."""

import pytest

from mfed.run import build
from mfed.types import scopes_of

STRATEGIES = ["mfed", "fedavg", "fedavg_all", "local", "fedprox", "fedrep", "ditto", "mfed_frozen_encoder"]
STRATEGIES += ["centralised", "fedhca2", "mfed_ca"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_client_of_one_task_never_receives_another_tasks_decoder_or_another_clients_state(tiny_cfg, strategy):
    # Prepare / Execute: one round of the default mix (3 tasks, 6 clients)
    driver = build(tiny_cfg(f"aggregation={strategy}", "federation.rounds=1", "data.test=null"))
    driver.run()
    # Assert: whatever each client loads is the encoder or its own task's decoder; its own scope is its alone
    for spec in driver.specs:
        loaded = [scope for scope in scopes_of(spec.client_id, spec.tasks) if scope in driver.state]
        assert loaded, spec.client_id
        for scope in loaded:
            keys = driver.state[scope]
            assert all(k.startswith(("encoder.", f"decoders.{spec.tasks[0]}.")) for k in keys), (scope, spec.tasks)
    others = {s for s in driver.state if s.startswith("client:")} - {f"client:{c}" for c in driver.client_ids}
    assert not others
