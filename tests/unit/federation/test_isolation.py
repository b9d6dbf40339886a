"""A client loads only its scopes, and those hold nothing of another task or another client."""

import pytest

from mfed.config import config_dir
from mfed.run import build
from mfed.types import scopes_of

OPTIONS = [f"aggregation={p.stem}" for p in sorted((config_dir() / "aggregation").glob("*.yaml"))]
OPTIONS += [f"server_optimizer={p.stem}" for p in sorted((config_dir() / "server_optimizer").glob("*.yaml"))]


@pytest.mark.parametrize("option", OPTIONS)
def test_a_client_of_one_task_never_receives_another_tasks_decoder_or_another_clients_state(tiny_cfg, option):
    # Prepare / Execute: one round of the default mix (3 tasks, 6 clients), every strategy and server optimiser
    driver = build(tiny_cfg(option, "federation.rounds=1", "data.test=null"))
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
