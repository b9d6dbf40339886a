"""Collecting one call per client from Ray actors as results arrive, surviving dead and late actors.

Results are taken with ``ray.wait`` and passed on in the order of ``client_ids`` (the sampling
order, so folds are bit-identical whatever the timing) as soon as every earlier client has
reported, so the driver folds each one in while the others still run. A client is sent only
while it lies within a window of places after the first client not yet passed on: behind a
straggler at most that many results wait in memory, however many clients the round has. A
client whose actor died (its process was killed, its node removed) is retried on a replacement,
up to ``max_retries`` times: clients are stateless (everything they need arrives with the call),
so a new actor loses nothing. A client whose code raised is not retried (it would raise again)
and is reported. Past ``timeout_s`` the calls still running are dropped and their actors
replaced, so the next round does not queue behind a straggler. While it waits, the pending
clients are logged every ``NOTE_EVERY_S`` (30) seconds: at INFO while the round is merely slow,
at WARNING once they lag ``STRAGGLER_RATIO`` times behind the results that came (a straggler).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from mfed.federation.backends import attributed
from mfed.interrupts import uninterruptible
from mfed.types import ClientFailure

log = logging.getLogger(__name__)

NOTE_EVERY_S = 30.0
STRAGGLER_RATIO = 3.0  # pending this many times as long as the results that came took: a straggler
WAIT_S = 1.0  # the longest a stop signal waits for the driver's attention
IN_FLIGHT_PER_HOST = 2
WINDOW_PER_HOST = 8  # the reorder window: this many places per live host (at least 16)


def short_error(err: BaseException) -> str:
    """The error's type and the first sentence of its last line (Ray's messages run long)."""
    lines = str(err).strip().splitlines()
    sentence = lines[-1].strip().split(". ")[0].rstrip(".") if lines else ""
    return f"{type(err).__name__}: {sentence}" if sentence else type(err).__name__


def gather(
    client_ids: Sequence[str],
    submit: Callable[[str, str], Any],
    lost: Callable[[str, Any], None],
    home: Callable[[str], str],
    hosts: Callable[[], Sequence[str]],
    max_retries: int,
    timeout_s: float | None,
    label: str,
) -> Iterator[Any]:
    """Run ``submit(client, host)`` for every client and yield each result in ``client_ids``' order.

    At most ``IN_FLIGHT_PER_HOST`` calls per host are out at a time (one running, one queued
    behind it), taken in the order of ``client_ids``; each result makes room for the next. A
    client goes to its home host (which keeps it built) when that has room; a host with room
    and no waiting client of its own takes the next waiting client of another (clients are
    stateless, so any host gives the same result). So ``ray.wait`` looks at a handful of
    ObjectRefs however many clients there are, results arrive about in order, no host idles
    while another has a queue (a sampled subset rarely splits evenly), and the clients of a
    lost host go to wherever they live next. Only clients within ``WINDOW_PER_HOST`` places per
    live host (at least 16) of the first one not yet passed on are sent: a straggler holds up at
    most that many results in memory.

    Args:
        client_ids: The clients, one call each.
        submit: ``submit(client, host)`` starts the client's call on that host; returns its ObjectRef.
        lost: ``lost(client, ref)``: the actor that ran the call ``ref`` is gone or hung; the
            backend replaces it (once, however many of its calls report it) before a retry.
        home: The host that keeps a client built.
        hosts: The live hosts.
        max_retries: Retries of a client whose actor died.
        timeout_s: Seconds for the whole call; ``None`` waits as long as it takes.
        label: What is being waited for, for the log (e.g. ``round 3 fit``).

    Yields:
        Each client's result, or a :class:`~mfed.types.ClientFailure` (``failed``, ``timeout``,
        ``rejected``), in the order of ``client_ids``; and a ``restarted`` note per retry as it
        happens.

    """
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    start = time.monotonic()
    noted = start
    came: float | None = None  # seconds from the start to the latest result
    retries = dict.fromkeys(client_ids, 0)
    position = {c: i for i, c in enumerate(client_ids)}
    waiting = list(client_ids)  # in position order
    pending: dict[Any, tuple[str, str]] = {}  # ObjectRef -> (client, host it was sent to)
    busy: Counter[str] = Counter()
    held: dict[int, Any] = {}  # final outcomes waiting for an earlier client's
    released = 0  # the position of the first client not yet passed on

    def send() -> None:
        nonlocal waiting
        live = hosts()
        limit = released + max(16, WINDOW_PER_HOST * len(live))  # behind a straggler, no more than this
        later, beyond = [], [c for c in waiting if position[c] >= limit]
        for client in (c for c in waiting if position[c] < limit):  # home hosts first
            host = home(client)
            if busy[host] < IN_FLIGHT_PER_HOST:
                pending[submit(client, host)] = (client, host)
                busy[host] += 1
            else:
                later.append(client)
        for host in live:  # then idle room takes what waits elsewhere
            while later and busy[host] < IN_FLIGHT_PER_HOST:
                client = later.pop(0)
                pending[submit(client, host)] = (client, host)
                busy[host] += 1
        waiting = later + beyond

    def final(client: str, outcome: Any) -> Iterator[Any]:
        """``client``'s last word, passed on once every earlier client's has been."""
        nonlocal released
        held[position[client]] = outcome
        while released in held:
            yield held.pop(released)
            released += 1

    send()
    while pending:
        now = time.monotonic()
        left = None if timeout_s is None else start + timeout_s - now
        if left is not None and left <= 0:
            for ref, (client, _) in pending.items():
                held[position[client]] = ClientFailure(client, "timeout", f"no result within {timeout_s:g} s; dropped")
                lost(client, ref)  # a hung actor would hold the next round's call
            for client in waiting:
                held[position[client]] = ClientFailure(
                    client, "timeout", f"not started within {timeout_s:g} s; dropped"
                )
            yield from (held[i] for i in sorted(held))
            return
        if now - noted >= NOTE_EVERY_S:
            _note_waiting(label, sorted([c for c, _ in pending.values()] + waiting), now - start, came, timeout_s)
            noted = now
        wait_s = WAIT_S if left is None else min(WAIT_S, left)
        with uninterruptible():  # a stop signal raises after the wait, not through Ray's compiled core
            done, _ = ray.wait(list(pending), num_returns=1, timeout=wait_s)
        for ref in done:
            client, host = pending.pop(ref)
            came = time.monotonic() - start
            busy[host] -= 1
            try:
                with uninterruptible():
                    result = ray.get(ref)
            except RayTaskError as err:  # the client's own code raised: deterministic, not retried
                yield from final(client, ClientFailure(client, "failed", f"raised {short_error(err.cause or err)}"))
            except RayActorError as err:  # the actor's process is gone
                lost(client, ref)
                if retries[client] < max_retries:
                    retries[client] += 1
                    reason = f"its actor died ({short_error(err)}); retry {retries[client]} of {max_retries}"
                    yield ClientFailure(client, "restarted", reason)  # a note: passed on at once
                    waiting = sorted([client, *waiting], key=position.__getitem__)
                else:
                    reason = f"its actor died {retries[client] + 1} times (last: {short_error(err)})"
                    yield from final(client, ClientFailure(client, "failed", reason))
            else:
                yield from final(client, attributed(client, result))  # whatever id the message claims
        send()


def _note_waiting(label: str, late: Sequence[str], waited: float, came: float | None, timeout_s: float | None) -> None:
    """Log the clients still out after ``waited`` seconds, the latest result having come at ``came``.

    A round whose clients are all still working is slow, not broken: INFO. Clients still out
    ``STRAGGLER_RATIO`` times as long as the others' results took hold the round up: WARNING,
    naming the setting that bounds the wait.
    """
    if came is None or waited <= STRAGGLER_RATIO * came:
        log.info("%s: waiting for %d clients after %.0f s: %s", label, len(late), waited, _few(late))
        return
    bound = (
        f"they are dropped at federation.round_timeout_s={timeout_s:g}"
        if timeout_s is not None
        else "set federation.round_timeout_s to drop clients this late"
    )
    log.warning(
        "%s: waiting for %d clients after %.0f s, the other results came within %.0f s: %s (%s)",
        label, len(late), waited, came, _few(late), bound,
    )  # fmt: skip


def _few(names: Sequence[str], most: int = 10) -> str:
    """Up to ``most`` names, then how many more."""
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")
