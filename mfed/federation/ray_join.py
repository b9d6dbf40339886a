"""Joining a running Ray cluster in seconds, or failing in one line that says why.

``ray.init(address=...)`` has no time limit where nothing listens (it retries for minutes), and
at a cluster with token authentication that refuses this process's token it retries for about
20 s, printing one of Ray's warnings a second. Both are found first: a TCP connect to the
address, then one GCS handshake (which is where a wrong or missing token is refused), each with
a short limit; only then does ``ray.init`` run.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterator

PROBE_TIMEOUT_S = 3.0  # a TCP connect to a live GCS on any network answers well within this


def join_cluster(address: str, key: str) -> None:
    """``ray.init`` at ``address`` (given as ``key``: ``backend.address`` or ``RAY_ADDRESS``), else a one-line error."""
    import ray

    cannot = f"{key}={address}: cannot join the Ray cluster there"
    why = unreachable(address)
    if why is not None:
        raise ValueError(f"{cannot} ({why}); {NO_HEAD}")
    why = token_refused(address)
    if why is not None:
        raise ValueError(f"{cannot} ({why}); {REFUSED}")
    try:
        ray.init(address=address, log_to_driver=True)
    except ConnectionError as err:  # a GCS that failed, or a refusal the handshake did not show
        raise ValueError(f"{cannot} ({root_cause(err)}); {REFUSED}") from None


NO_HEAD = "check the address (the head's GCS host:port, as `ray start --head` prints it) and that the head is running"
REFUSED = (
    "check the address, and for a cluster with token authentication export RAY_AUTH_MODE=token with its token "
    "(RAY_AUTH_TOKEN, or the file ~/.ray/auth_token; README: Ray clusters)"
)


def host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``host:port`` or ``ray://host:port`` address; ``None`` for any other form.

    ``auto`` (Ray reads the local cluster's address file), ``local`` and unknown schemes are left to Ray.
    """
    rest = address[len("ray://") :] if address.startswith("ray://") else address
    host, sep, port = rest.rpartition(":")
    if not sep or "://" in rest or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)  # [::1]:6379 -> ::1


def unreachable(address: str) -> str | None:
    """Why nothing answers a TCP connect to ``address`` in ``PROBE_TIMEOUT_S``; ``None`` if it does or is not probed."""
    where = host_port(address)
    if where is None:
        return None
    try:
        socket.create_connection(where, timeout=PROBE_TIMEOUT_S).close()
    except OSError as err:  # refused, timed out, unknown host, no route
        return f"nothing answers a TCP connect within {PROBE_TIMEOUT_S:g} s: {err.strerror or err}"
    return None


def token_refused(address: str) -> str | None:
    """Ray's reason where the GCS at a ``host:port`` address refuses this process's token; ``None`` otherwise.

    One handshake (about a second); anything but an authentication refusal (a ``ray://`` address,
    another Ray version's API, a GCS still starting) is left to ``ray.init``, which says more.
    """
    if address.startswith("ray://") or host_port(address) is None:
        return None
    try:
        from ray._raylet import GcsClient  # type: ignore[attr-defined]  # compiled: no stubs
        from ray.exceptions import AuthenticationError
    except ImportError:
        return None
    try:
        with _quiet_stderr():  # Ray's C++ client logs its own warning line for the refusal
            GcsClient(address=address)
    except AuthenticationError as err:
        reason = str(err).split(". ", 1)[0].removeprefix("RPC error: ")
        mode = os.environ.get("RAY_AUTH_MODE") or "unset"
        return f"ray.exceptions.AuthenticationError: {reason}; RAY_AUTH_MODE is {mode}"
    except Exception:  # noqa: BLE001 - not a refusal: ray.init tells what it is
        return None
    return None


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 to /dev/null for the block (what native code writes there too)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def root_cause(err: BaseException) -> str:
    """The last line of the innermost exception behind ``err``: Ray wraps why a join failed, traceback and all."""
    while err.__cause__ is not None:
        err = err.__cause__
    lines = str(err).strip().splitlines()
    last = lines[-1].strip() if lines else type(err).__name__
    return last if len(last) <= 300 else last[:297] + "..."
