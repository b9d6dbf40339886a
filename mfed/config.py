"""Finding and composing the Hydra configs (no ``@hydra.main``: the caller keeps its cwd)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf, open_dict

from mfed.config_dir import ENV_VAR as ENV_VAR  # re-exported: mfed.config.ENV_VAR was defined here
from mfed.config_dir import PATH_VAR, config_dir, is_option, shadowed, user_dirs
from mfed.schema.advice import null_group, several_values
from mfed.schema.checker import MOVED
from mfed.schema.errors import ConfigError, did_you_mean
from mfed.schema.paths import check_uri


def load_config(overrides: Sequence[str] = (), name: str = "config") -> DictConfig:
    """Compose ``name`` with Hydra command-line style ``overrides``."""
    if not OmegaConf.has_resolver("now"):
        OmegaConf.register_new_resolver("now", lambda fmt: datetime.now().strftime(fmt), use_cache=True)
    if not OmegaConf.has_resolver("volume"):
        OmegaConf.register_new_resolver("volume", volume)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        try:
            cfg = compose(config_name=name, overrides=[*overrides, *_search_path()], return_hydra_config=True)
        except ConfigCompositionException as err:
            hint = _unknown_argument(str(err), overrides, name) or several_values(str(err))
            if hint is None:
                raise
            raise ConfigError(hint) from None
        except ValueError as err:  # Hydra's "Config group override must be a string or a list. Got NoneType"
            hint = null_group(overrides) if "NoneType" in str(err) else None
            if hint is None:
                raise
            raise ConfigError(hint) from None
    return _with_choices(cfg)


def volume(count: int, *, _root_: DictConfig) -> int:
    """``${volume:795}``: ``count`` times ``federation.volume`` (at least 1): FMTL-Bench's volumes, scaled."""
    share = float(_root_.federation.get("volume", 1.0))
    if not share > 0:
        raise ValueError(f"federation.volume must be > 0 (a share of the paper's data volumes), got {share}")
    return max(1, round(int(count) * share))


def _search_path() -> list[str]:
    """Hydra's override adding the user's config folders after mfed's; none without any."""
    users = user_dirs()
    if not users:
        return []
    clash = shadowed(users)
    if clash:
        mine, ours = clash[0]
        raise ConfigError(
            f"{PATH_VAR}: {mine} has the name of mfed's {ours}, which would be used instead: rename yours "
            f"({mine.parent.name}/{mine.stem}_mine.yaml) and pick it by that name"
        )
    return [f"hydra.searchpath=[{','.join(f'file://{d}' for d in users)}]"]


def _with_choices(cfg: DictConfig) -> DictConfig:
    """``cfg`` without Hydra's own node, recording in ``choices`` the option each config group was composed from.

    ``{federation: mixed, data: shapes, ...}``: what a run's name, group and report.md say it ran.
    """
    choices = {k: v for k, v in cfg.hydra.runtime.choices.items() if v is not None and not k.startswith("hydra/")}
    with open_dict(cfg):
        del cfg["hydra"]
        cfg.choices = choices
    return cfg


def _unknown_argument(message: str, overrides: Sequence[str], name: str) -> str | None:
    """For an override of a key an object's YAML (``aggregation``, ``backend``, ``model.encoder``) lacks: the fix.

    Such a key is meant for the object's constructor: the closest argument the constructor takes,
    or, for an argument it takes that the YAML does not list, the override with a leading ``+``.
    None for any other error (the schema's message names it).
    """
    import inspect

    from hydra.utils import get_class

    match = re.match(r"Could not override '([^']+)'", message)
    if match is None or match.group(1) in MOVED:
        return None
    key = match.group(1)
    parent, _, arg = key.rpartition(".")
    rest = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != key]
    try:
        node = (
            OmegaConf.select(compose(config_name=name, overrides=[*rest, *_search_path()]), parent) if parent else None
        )
        target = str(node._target_) if isinstance(node, DictConfig) and "_target_" in node else None
        params = inspect.signature(get_class(target)).parameters if target else None
    except Exception:  # another override is bad too, or the target does not import: the schema names it
        return None
    if params is None:
        return None
    takes = [
        p for p in params if params[p].kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if arg in takes:
        value = next(o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == key)
        return (
            f"{key} is an argument of {parent} ({target}) that its YAML does not list: add it with a leading +, "
            f"+{key}={value}"
        )
    near = did_you_mean(arg, takes)
    fix = f"did you mean {parent}.{near}?" if near else f"it takes {', '.join(takes)}"
    return f"{key} is not an argument of {parent} ({target}): {fix}"


def load_run_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The config of ``mfed train``: composed from ``overrides``, or, with ``resume=<run>``, the run's own.

    A resumed run continues with the settings its ``config.yaml`` recorded, in the folder it is
    resumed from (wherever it was copied or moved to) unless ``out_dir=`` says otherwise; further
    ``key=value`` overrides (e.g. ``federation.rounds=20``) apply on top. Switching a config group
    (``aggregation=fedavg``) is refused: a resumed run keeps its groups.
    """
    resume = next((o.split("=", 1)[1] for o in overrides if o.startswith("resume=")), None)
    saved = _saved_config(resume) if resume else None
    if saved is None:
        return load_config(overrides)
    values = []
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        node = OmegaConf.select(saved, key)
        group = is_option(key, value)
        if (group or isinstance(node, DictConfig)) and not value.startswith("{"):
            differs = _group_difference(key, override, node)
            if differs is None:
                continue  # the group the run already holds (resume=... data=shapes on a shapes run): nothing changes
            raise ValueError(
                f"resume: {override!r} would change the run's {key} ({differs}); a resumed run keeps the "
                "groups its config.yaml records: leave it off, or start a new run to change it"
            )
        values.append(override.lstrip("+"))
    merged = OmegaConf.merge(saved, OmegaConf.from_dotlist(values))
    assert isinstance(merged, DictConfig)
    merged.resume = resume
    if not any(o.startswith("out_dir=") for o in overrides):
        merged.out_dir = None  # the run goes on where it is now (a copied or moved folder), not where it was made
    return merged


def _group_difference(key: str, override: str, node: object) -> str | None:
    """Where config group option ``override`` differs from the resumed run's ``node``; None where it does not."""
    try:
        chosen = OmegaConf.select(load_config([override, "out_dir=unused"]), key)
    except Exception:  # an unknown option: Hydra's message names the options when the run is composed anew
        return f"{override} is not an option of {key}"
    ours = OmegaConf.to_container(chosen) if isinstance(chosen, DictConfig) else chosen
    theirs = OmegaConf.to_container(node) if isinstance(node, DictConfig) else node
    return first_difference(ours, theirs, key)


def first_difference(
    ours: object, theirs: object, path: str, where: tuple[str, str] = ("there", "in the run")
) -> str | None:
    """The first key where ``ours`` and ``theirs`` differ, in words (``where`` names the two); None where none does."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for name in dict.fromkeys([*ours, *theirs]):
            found = first_difference(ours.get(name), theirs.get(name), f"{path}.{name}".lstrip("."), where)
            if found:
                return found
        return None
    return None if ours == theirs else f"{path} is {ours!r} {where[0]}, {theirs!r} {where[1]}"


def _saved_config(resume: str) -> DictConfig | None:
    """The resumed run's config.yaml; ``None`` where there is no run at all (the schema names that)."""
    from mfed.federation.rundir import is_uri, join, read_text, run_dir_of

    if is_uri(resume):
        check_uri("resume", resume, write=False)
    where = join(run_dir_of(resume), "config.yaml")
    text = read_text(where)  # one file; a URI's run is fetched with its checkpoint
    if text is None and not is_uri(resume) and not Path(run_dir_of(resume)).exists():
        return None
    if text is None:
        raise FileNotFoundError(
            f"resume: there is no {where}, so the run's settings are unknown; resume from the run's own folder "
            "(it holds config.yaml beside checkpoint.pt)"
        )
    try:
        saved = OmegaConf.create(text)
    except Exception as err:  # a truncated or edited file: YAML's or OmegaConf's error
        raise ValueError(f"resume: {where} is not a whole config ({str(err).splitlines()[0]}); restore it") from None
    optional = {"choices"}  # a run whose config.yaml predates ``choices`` resumes without it
    missing = sorted(set(load_config([])) - set(saved) - optional) if isinstance(saved, DictConfig) else ["everything"]
    if missing:
        raise ValueError(f"resume: {where} is not a whole config: it lacks {', '.join(missing)}; restore it")
    assert isinstance(saved, DictConfig)
    return saved
