"""Where the Hydra configs live: mfed's ``configs/``, then the user's folders (``MFED_CONFIG_PATH``).

A module of its own: :mod:`mfed.config`, :mod:`mfed.schema` and the command line all need it.
A user's folder holds config groups laid out as ``configs/`` is (``task/mine.yaml``,
``aggregation/mine.yaml``), for classes of the user's own importable code; it adds options and
never replaces one of mfed's (a file of the same name is refused).
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

ENV_VAR = "MFED_CONFIG_DIR"
PATH_VAR = "MFED_CONFIG_PATH"


def config_dir() -> Path:
    """The package's own configs folder: ``$MFED_CONFIG_DIR``, else ``configs/`` beside the package."""
    env = os.environ.get(ENV_VAR)
    path = Path(env) if env else Path(__file__).resolve().parents[1] / "configs"
    if not (path / "config.yaml").is_file():
        raise FileNotFoundError(
            f"no config.yaml in {path}: install mfed from its repository (pip install -e .) "
            f"or set {ENV_VAR} to the repository's configs/ folder"
        )
    return path


def user_dirs() -> list[Path]:
    """The user's config folders, in order: ``$MFED_CONFIG_PATH``'s entries (``--config-dir`` puts its own first).

    An entry is a folder, or ``pkg://<module>`` for a folder inside an installed package
    (``pkg://mfed_example.configs``).
    """
    found: list[Path] = []
    for entry in _entries():
        if entry.startswith("pkg://"):
            package, *inside = entry.removeprefix("pkg://").replace("/", ".").split(".")
            try:
                path = Path(str(resources.files(package))).joinpath(*inside)
            except ModuleNotFoundError:
                raise FileNotFoundError(
                    f"{PATH_VAR}: {entry}: there is no package {package}; install the project that holds it "
                    "(pip install <your project>) or give the folder's path"
                ) from None
        else:
            path = Path(entry).expanduser().resolve()
        if not path.is_dir():
            raise FileNotFoundError(f"{PATH_VAR}: {entry} is not a folder; give folders of config groups")
        found.append(path)
    return found


def add_user_dirs(dirs: list[str]) -> None:
    """Put ``dirs`` (``--config-dir``) first on ``$MFED_CONFIG_PATH``, which Ray's workers inherit."""
    given = [str(Path(d).expanduser().resolve()) if not d.startswith("pkg://") else d for d in dirs]
    os.environ[PATH_VAR] = os.pathsep.join([*given, *_entries()])


def _entries() -> list[str]:
    """``$MFED_CONFIG_PATH`` split at the path separator (``:``, but not the one of ``pkg://``)."""
    return [e for e in re.split(rf"{re.escape(os.pathsep)}(?!//)", os.environ.get(PATH_VAR, "")) if e]


def config_dirs() -> list[Path]:
    """The package's configs folder, then the user's (:func:`user_dirs`)."""
    return [config_dir(), *user_dirs()]


def group_options(group: str) -> list[str]:
    """The options of config group ``group`` (``aggregation``, ``model/encoder``) over every folder, sorted."""
    return sorted({p.stem for root in config_dirs() for p in (root / group).glob("*.yaml")})


def is_group(key: str) -> bool:
    """Whether ``key`` (``privacy``, ``model.encoder``) names a config group in some folder."""
    return any((root / key.replace(".", "/")).is_dir() for root in config_dirs())


def is_option(key: str, value: str) -> bool:
    """Whether ``key=value`` picks an option of a config group (``aggregation=fedavg``)."""
    return any((root / key.replace(".", "/") / f"{value}.yaml").is_file() for root in config_dirs())


def shadowed(users: list[Path]) -> list[tuple[Path, Path]]:
    """``(user's file, mfed's file)`` for each YAML under ``users`` named as one of mfed's (Hydra picks ours)."""
    own = config_dir()
    return [
        (file, own / file.relative_to(root))
        for root in users
        for file in sorted(root.rglob("*.yaml"))
        if (own / file.relative_to(root)).is_file()
    ]
