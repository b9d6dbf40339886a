"""A host serving many clients gives each one exactly what a client of its own would."""

import dataclasses

import torch

from mfed.aggregation.fold import aggregate
from mfed.federation.host import ClientHost
from mfed.run import build
from mfed.types import ClientFailure, ClientUpdate


def scoped(state):
    """The server state as a host receives it: scope names, then one tensor dict per scope."""
    return [list(state), *state.values()]


def test_a_host_with_a_cache_of_one_trains_each_client_as_its_own_client_would(tiny_cfg):
    # Prepare: the serial backend's clients and a host of the same 4 clients that rebuilds each on every call
    driver = build(tiny_cfg("task_mix=seg_depth"))
    state = driver.strategy.init_state(driver.model)
    driver.backend.start(driver.specs, driver.setup)
    setup = driver.setup
    host = ClientHost(driver.specs, setup.without_data(), setup.dataset, setup.test_dataset, cache=1)
    # Execute: two rounds of the same clients, in turn
    for round_idx in (1, 2):
        plan = driver.plan(round_idx, driver.client_ids)
        expected = list(driver.backend.fit(driver.client_ids, state, round_idx, plan))
        got = [host.fit(c, (round_idx, plan[c], None), *scoped(state)) for c in driver.client_ids]
        # Assert: bit-identical updates
        for e, g in zip(expected, got, strict=True):
            assert isinstance(g, ClientUpdate) and g.client_id == e.client_id
            for key, value in e.state.items():
                torch.testing.assert_close(g.state[key], value, rtol=0, atol=0)
        state = aggregate(driver.fold, state, expected)
    assert len(host._clients) == 1  # the cache held one client at a time


def test_a_failing_client_is_reported_and_the_hosts_other_clients_go_on(tiny_cfg):
    driver = build(tiny_cfg("task_mix=seg_depth"))
    specs = list(driver.specs)
    specs[1] = dataclasses.replace(specs[1], train_indices=(10**6,))  # an index the pool does not have
    setup = driver.setup
    host = ClientHost(specs, setup.without_data(), setup.dataset, setup.test_dataset, cache=4)
    state = scoped(driver.strategy.init_state(driver.model))
    plan = driver.plan(1, driver.client_ids)
    results = [host.fit(s.client_id, (1, plan[s.client_id], None), *state) for s in specs]
    assert isinstance(results[1], ClientFailure) and results[1].client_id == specs[1].client_id
    assert results[1].kind == "failed" and results[1].reason.startswith("raised ")
    assert all(isinstance(r, ClientUpdate) for i, r in enumerate(results) if i != 1)
