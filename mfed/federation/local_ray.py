"""The embedded local Ray that a driver starts in-process when it is given no cluster.

Ray 2.60 turns token authentication on for every new ``ray.init()`` cluster when
``RAY_AUTH_MODE`` is unset (it writes a token to ``~/.ray/auth_token`` if none exists and sets
``RAY_AUTH_MODE=token`` in this process) and logs a warning saying so on every start. We choose
the same mode explicitly, which silences that warning, rather than opting out with
``disabled``: the embedded Ray is not loopback-only. Its GCS, raylet and workers listen on all
interfaces (``ss -ltn`` shows ``*:<port>``), and ``_node_ip_address="127.0.0.1"`` does not help
because Ray replaces a loopback node address with the machine's own
(``ray._private.services.resolve_ip_for_localhost``). The token is what keeps other hosts from
running code through it for as long as this driver runs; ``ray.shutdown()`` (in
``RayBackend.shutdown``, or at the interpreter's exit) ends every process it started.

The token is a secret: where none exists, it is written here before Ray starts, readable by its
owner only from its first byte, in a ``~/.ray`` of mode 700 (Ray would write it with the umask's
mode, 644, and only then could it be restricted). Ray's core installs a SIGTERM handler that
exits with status 15 while ``ray.init`` runs; a SIGTERM then is a stop like any other
(:class:`~mfed.interrupts.StopRequested`: the run ends ``interrupted``, exit 130).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys
from pathlib import Path

from mfed.interrupts import StopRequested

log = logging.getLogger(__name__)

AUTH_MODE_ENV = "RAY_AUTH_MODE"


def init_local_ray(num_cpus: int | None = None) -> None:
    """Start an embedded single-node Ray in this process, with token authentication on.

    ``RAY_AUTH_MODE`` is set only in this process's environment (``os.environ``), where the Ray
    processes it starts inherit it, as Ray's own default does; the user's shell and any other
    Ray command they run are unaffected. A mode the user already set is kept.

    Args:
        num_cpus: CPUs the local Ray offers; None lets Ray count the machine's.

    """
    if AUTH_MODE_ENV not in os.environ and "ray" not in sys.modules:
        # Ray reads the mode when it is imported: set before that, it starts in token mode quietly.
        # Imported already (by the caller), Ray's own default applies: token mode, with its warning.
        os.environ[AUTH_MODE_ENV] = "token"
    import ray

    log.debug("starting an embedded local Ray (%s=%s)", AUTH_MODE_ENV, os.environ.get(AUTH_MODE_ENV, "Ray's default"))
    if os.environ.get(AUTH_MODE_ENV) == "token":
        ensure_token(token_path())
    try:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)
    except SystemExit as exit_:  # Ray's own SIGTERM handler, installed during init, exits with the signal
        if exit_.code == signal.SIGTERM:
            raise StopRequested(signal.SIGTERM) from None
        raise
    restrict(token_path())


def token_path() -> Path:
    """Where Ray keeps its authentication token: ``$RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``."""
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")


def ensure_token(path: Path) -> None:
    """Write a new token to ``path`` where none exists, owner-only from its first byte (its folder 700).

    The token is Ray's format (256 random bits as 64 hex digits, as ``ray get-auth-token --generate``).
    """
    if path.exists():
        restrict(path)
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.parent.stat().st_mode & 0o077 and path.parent == Path.home() / ".ray":
        path.parent.chmod(0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process wrote it meanwhile: theirs is the token
        return
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))


def restrict(path: Path) -> None:
    """Make a secret file readable by its owner only (Ray writes its token with the umask's mode, 644)."""
    if path.is_file() and path.stat().st_mode & 0o077:
        path.chmod(0o600)
        log.debug("%s made readable by its owner only", path)
