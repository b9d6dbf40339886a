"""The gather loop on a scripted Ray: results in the sampling order, a bounded window behind a straggler."""

import sys
import types
from dataclasses import dataclass

import pytest

from mfed.federation import gather as gather_module
from mfed.federation.gather import gather


@dataclass(frozen=True)
class Result:
    client_id: str


class ScriptedRay:
    """``ray.wait`` finishes the earliest-sent call first, except the straggler's, which ends only when alone."""

    def __init__(self, straggler: str | None) -> None:
        self.straggler, self.sent, self.order = straggler, {}, []

    def submit(self, client: str, host: str) -> object:
        ref = object()
        self.sent[ref] = client
        self.order.append(ref)
        return ref

    def wait(self, refs, num_returns=1, timeout=None):
        ready = [r for r in self.order if r in refs and self.sent[r] != self.straggler] or list(refs)
        return ready[:1], [r for r in refs if r is not ready[0]]

    def get(self, ref):
        return Result(self.sent[ref])


def run(monkeypatch, n: int, hosts: list[str], straggler: str | None) -> tuple[list[str], int]:
    """The yielded clients in order, and the most results that were sent but not yet passed on."""
    fake = ScriptedRay(straggler)
    exceptions = types.SimpleNamespace(RayActorError=type("RayActorError", (Exception,), {}),
                                       RayTaskError=type("RayTaskError", (Exception,), {}))  # fmt: skip
    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(wait=fake.wait, get=fake.get, exceptions=exceptions))
    monkeypatch.setitem(sys.modules, "ray.exceptions", exceptions)
    clients = [f"c{i}" for i in range(n)]
    out, most = [], 0
    for result in gather(clients, fake.submit, lambda c, r: None, lambda c: hosts[int(c[1:]) % len(hosts)],
                         lambda: hosts, 0, None, "test"):  # fmt: skip
        out.append(result.client_id)
        most = max(most, len(fake.sent) - len(out) + 1)
    return out, most


def test_results_come_in_sampling_order_and_a_straggler_holds_back_at_most_the_window(monkeypatch):
    # Prepare / Execute: 200 clients on 2 hosts, the first one late, against the same run without it
    late, late_most = run(monkeypatch, 200, ["h0", "h1"], straggler="c0")
    plain, _ = run(monkeypatch, 200, ["h0", "h1"], straggler=None)
    # Assert: the same order either way (so the same fold, bit for bit); behind the straggler at most the
    # window (16 places for 2 hosts) was sent and not yet passed on, not the whole round
    assert late == plain == [f"c{i}" for i in range(200)]
    window = max(16, gather_module.WINDOW_PER_HOST * 2)
    assert late_most <= window
    assert late_most == window  # the window filled while c0 ran: the other hosts were kept busy up to it


@pytest.mark.parametrize("hosts", [1, 4])
def test_the_window_grows_with_the_hosts(monkeypatch, hosts):
    names = [f"h{i}" for i in range(hosts)]
    _, most = run(monkeypatch, 300, names, straggler="c0")
    assert most == max(16, gather_module.WINDOW_PER_HOST * hosts)


@pytest.mark.parametrize(
    ("waited", "came", "timeout_s", "level", "says"),
    [
        (60.0, None, None, "INFO", "round 1 fit: waiting for 2 clients after 60 s: a, b"),  # all still working: slow
        (60.0, 25.0, None, "INFO", "waiting for 2 clients after 60 s"),  # results still coming about as fast
        (90.0, 25.0, None, "WARNING", "the other results came within 25 s: a, b (set federation.round_timeout_s"),
        (90.0, 25.0, 120.0, "WARNING", "(they are dropped at federation.round_timeout_s=120)"),
    ],
)
def test_a_slow_round_is_noted_at_info_and_a_straggler_is_warned_of(caplog, waited, came, timeout_s, level, says):
    # Prepare
    caplog.set_level("INFO", logger=gather_module.__name__)
    # Execute: 2 clients still out after `waited` s, the latest other result having come at `came` s
    gather_module._note_waiting("round 1 fit", ["a", "b"], waited, came, timeout_s)
    # Assert: WARNING only past STRAGGLER_RATIO (3) times the others' time
    [record] = caplog.records
    assert record.levelname == level and says in record.getMessage()
