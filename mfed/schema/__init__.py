"""Check a composed config before anything is built: unknown keys, value types and ranges, ``resume``, ``out_dir``.

:func:`check_config` raises :class:`ConfigError` with one line naming the full key, the bad value,
what is allowed and the fix. The keys of a ``_target_`` node are its target's constructor
parameters (read with :mod:`inspect`, typed by their annotations), so a new constructor argument
needs no change here. Nodes without ``_target_`` are declared in :data:`PLAIN`; a key that a YAML
file under configs/ adds is accepted too, typed by its value there (``null`` there: may be null).
"""

from __future__ import annotations

import re
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mfed.schema.advice import foreign_note, near_key
from mfed.schema.checker import MOVED, RESERVED, check_keys
from mfed.schema.errors import ConfigError, MissingRunError, did_you_mean, first_line
from mfed.schema.hints import SCALARS, SEQUENCES, WORDS, Allowed
from mfed.schema.paths import SYSTEM_DIRS, check_resume, check_uri, check_writable
from mfed.schema.plain import PLAIN, Spec, plain_examples, plain_schema
from mfed.schema.values import RULES, check_values

__all__ = [
    "PLAIN",
    "RESERVED",
    "RULES",
    "SCALARS",
    "SEQUENCES",
    "SYSTEM_DIRS",
    "WORDS",
    "Allowed",
    "ConfigError",
    "MissingRunError",
    "Spec",
    "check_config",
    "check_resume",
    "check_values",
    "check_writable",
    "did_you_mean",
    "error_line",
    "plain_examples",
    "plain_schema",
]


def check_config(cfg: DictConfig) -> None:
    """Refuse unknown keys, values of the wrong type or out of range, a missing ``resume``, an unwritable ``out_dir``.

    Without ``out_dir`` (and not resuming) the run's folder is made under ``storage``: that is checked.

    Raises:
        ConfigError: One line: the full key, the bad value, what is allowed and the fix.

    """
    try:
        data: Any = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        where = f" at {err.full_key}" if getattr(err, "full_key", None) else ""
        raise ConfigError(f"the config cannot be resolved{where}: {first_line(err)}") from None
    assert isinstance(data, dict)
    check_keys(OmegaConf.to_container(cfg, resolve=False), data)  # type: ignore[arg-type]
    check_values(data, plain_examples())  # in range: federation.fraction=2, seed=-1
    if data.get("resume") and "://" not in str(data["resume"]):
        check_resume(str(data["resume"]))
    # without out_dir (and not resuming) the run's folder is made under storage
    key = "out_dir" if data.get("out_dir") or data.get("resume") else "storage"
    if data.get(key) and "://" not in str(data[key]):
        check_writable(key, str(data[key]))
    elif data.get(key):
        check_uri(key, str(data[key]), write=True)


def error_line(err: BaseException) -> str:
    """A config error (Hydra's, ours, a constructor's) as one line for the CLI."""
    from hydra.errors import MissingConfigException

    while not str(err).strip() and (err.__cause__ or err.__context__):
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    text = str(err)
    missing = getattr(err, "missing_cfg_file", None) or ""
    if isinstance(err, MissingConfigException) and err.options and "/" in missing:
        group, option = missing.rsplit("/", 1)
        return f"{group}={option}: there is no configs/{missing}.yaml; choose one of {', '.join(err.options)}"
    match = re.match(r"Could not override '([^']+)'", text)
    if match and isinstance(err.__cause__, OmegaConfBaseException):
        key = match.group(1)
        near = MOVED.get(key) or near_key(key)
        fix = f"did you mean {near}?{foreign_note(key, near)}" if near else "check the name (mfed refuses unknown keys)"
        return f"{key} is not a known key: {fix}"
    return " ".join(line.strip() for line in text.splitlines() if line.strip()) or type(err).__name__
