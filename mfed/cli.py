"""The ``mfed`` console command.

``mfed train [overrides]`` runs a federation; overrides are Hydra's (``key=value``,
``group=option``), e.g. ``mfed train aggregation=fedavg federation.rounds=5 seed=1``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Sequence

from omegaconf import OmegaConf


def _train(args: argparse.Namespace) -> int:
    from hydra.errors import HydraException

    from mfed.config import load_run_config
    from mfed.interrupts import StopRequested, stop_on_signals
    from mfed.plan import plan
    from mfed.run import build, local_dir, start
    from mfed.schema import error_line

    with stop_on_signals():
        try:
            cfg = load_run_config(args.overrides)
            if args.print_config:  # a run's checks up to its data: what the print shows, a run takes
                plan(cfg)
                print(OmegaConf.to_yaml(cfg, resolve=True))
                return 0
            driver = start(build(cfg), cfg)
        except (HydraException, ValueError, FileNotFoundError) as err:
            print(f"mfed: {error_line(err)}", file=sys.stderr)
            return 2
        except (KeyboardInterrupt, StopRequested):
            print("mfed: interrupted before the first round; nothing was run", file=sys.stderr)
            return 130
        except OSError as err:  # a read-only or full folder: where, and what to do (nothing was run)
            where = err.filename or "the output folder"
            print(f"mfed: cannot write {where}: {err.strerror or err}; give a writable out_dir=<folder> "
                  "(with resume=<run>, the resumed run writes there); nothing was run", file=sys.stderr)  # fmt: skip
            return 2
        out_dir = local_dir(str(cfg.out_dir))
        resume = f"continue with: mfed train resume={cfg.out_dir}"
        try:
            driver.run()
        except (KeyboardInterrupt, StopRequested):
            done = f"{len(driver.history)} of {driver.rounds} rounds"
            print(f"mfed: interrupted after {done}; {resume}", file=sys.stderr)
            return 130
        except Exception as err:
            log_file = out_dir / "error.log"
            try:
                log_file.write_text(traceback.format_exc())
                where = f"traceback in {log_file}"
            except OSError as unwritable:
                where = f"no traceback written: {unwritable.strerror or unwritable}"
            print(f"mfed: the run failed: {error_line(err)} ({where}; {resume})", file=sys.stderr)
            return 1
    if driver.status == "diverged":
        print(f"mfed: the run diverged: {driver.error}; its outputs are in {cfg.out_dir}", file=sys.stderr)
        return 1
    print(f"outputs in {cfg.out_dir}: config.yaml, history.json, summary.json, checkpoint.pt")
    for run_dir in sorted(out_dir.glob("wandb/offline-run-*")):
        print(f"W&B offline run: {run_dir} (upload later with: wandb sync {run_dir})")
    return 0


def _data_preview(args: argparse.Namespace) -> int:
    from hydra.errors import HydraException

    from mfed.config import load_config
    from mfed.data.preview import preview_grid
    from mfed.run import instantiate
    from mfed.schema import ConfigError, check_config, error_line

    if args.n < 1:
        print(f"mfed: --n {args.n}: the preview needs at least one sample; give --n 1 or more (default 6)",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        cfg = load_config(args.overrides)
        check_config(cfg)
        pool = instantiate(cfg.data.pool)
    except (HydraException, ConfigError, ValueError, FileNotFoundError) as err:
        print(f"mfed: {error_line(err)}", file=sys.stderr)
        return 2
    keys = [k for k in getattr(pool, "tasks", cfg.tasks.keys())]
    path = preview_grid(pool, range(min(args.n, len(pool))), keys, args.out)
    print(f"wrote {path}")
    return 0


def _many(args: argparse.Namespace, kind: str) -> int:
    """``mfed sweep`` and ``mfed benchmark``: check every trial, run them on Ray Tune, print the report."""
    from hydra.errors import HydraException

    from mfed.config import load_config
    from mfed.federation.rundir import DEFAULT_STORAGE, default_out_dir, is_uri
    from mfed.schema import ConfigError, check_config, error_line
    from mfed.sweeps.plan import override_key

    try:
        cfg = load_config(args.overrides)
        if cfg.get(kind) is None:
            print(f"mfed: pick a {kind}: mfed {kind} {kind}=<name> (configs/{kind}/)", file=sys.stderr)
            return 2
        check_config(cfg)
        storage = str(cfg.get("storage") or DEFAULT_STORAGE)
        out_dir = str(cfg.get("out_dir") or default_out_dir(storage, f"{kind}-{cfg[kind].name}"))
        if is_uri(out_dir):
            raise ConfigError(f"out_dir={out_dir}: a {kind} writes to a folder, not a URI; give out_dir=<folder>")
        own = (kind, "out_dir")  # the sweep's or benchmark's own keys; the rest goes to every run
        base = [o for o in args.overrides if override_key(o).split(".")[0] not in own]
        if kind == "sweep":
            from mfed.sweeps.report import markdown
            from mfed.sweeps.sweep import run_sweep

            text = markdown(run_sweep(cfg.sweep, base, out_dir), str(cfg.sweep.name)).split("\n![")[0]
            files = "sweep.md, sweep.json, sweep.png"
        else:
            from mfed.sweeps.benchmark import run_benchmark
            from mfed.sweeps.results import markdown as results_markdown

            text = results_markdown(run_benchmark(cfg.benchmark, base, out_dir), images=False)
            files = "results.md, results.json, curves_<task>.png, delta_m.png"
    except (HydraException, ConfigError, ValueError, FileNotFoundError) as err:  # every trial is checked first
        print(f"mfed: {error_line(err)}", file=sys.stderr)
        return 2
    print(text)
    print(f"{kind} results in {out_dir}: {files}, one run folder per trial")
    return 0


def _report(args: argparse.Namespace) -> int:
    from mfed.loggers.report import write_report

    try:
        path = write_report(args.out_dir)
    except (FileNotFoundError, ValueError) as err:
        print(f"mfed: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path} and {path.parent / 'curves.png'}")
    return 0


def _results(args: argparse.Namespace) -> int:
    from mfed.sweeps.results import regenerate

    try:
        path = regenerate(args.path, args.out)
    except (FileNotFoundError, ValueError, KeyError, json.JSONDecodeError) as err:
        what = f"missing key {err}" if isinstance(err, KeyError) else str(err)
        print(f"mfed: {args.path}: not a benchmark's results ({what}); give results.json or its folder",
              file=sys.stderr)  # fmt: skip
        return 2
    print(f"statistics recomputed from the runs: wrote {path}, {path.with_suffix('.json').name} and the PNGs "
          f"in {path.parent}")  # fmt: skip
    return 0


def version() -> str:
    """The installed package's version (importlib.metadata), or ``unknown`` for a source tree not installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("mfed")
    except PackageNotFoundError:
        return "unknown"


def config_groups() -> str:
    """The config groups (the folders of configs/) with their options, for ``--help``."""
    import textwrap

    from mfed.config_dir import config_dirs, group_options

    roots = config_dirs()
    lines = [f"config groups (pick an option with group=option; configs in {', '.join(map(str, roots))}):"]
    for group in sorted({p.name for root in roots for p in root.iterdir() if p.is_dir()}):
        options = ", ".join(group_options(group))
        how = "+task@tasks.<t>=<t>" if group == "task" else f"{group}="  # a task is added, not picked
        lines.append(textwrap.fill(options, 100, initial_indent=f"  {how:<20} ", subsequent_indent=" " * 23))
    lines.append("keys: key=value (federation.rounds=5, optimizer.lr=0.01); a sweep of values: mfed sweep")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    raw = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog="mfed", description="Multi-task federated learning (M-Fed) on Ray", epilog=config_groups(),
        formatter_class=raw,
    )  # fmt: skip
    p.add_argument("--version", action="version", version=f"mfed {version()}")
    configs = argparse.ArgumentParser(add_help=False)  # what every command composing a config takes
    configs.add_argument(
        "--config-dir", action="append", default=[], metavar="DIR",
        help="a folder of your own config groups (task/mine.yaml, aggregation/mine.yaml), searched after mfed's; "
        "repeatable; pkg://<module> for one inside an installed package; also $MFED_CONFIG_PATH",
    )  # fmt: skip
    sub = p.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train", help="run a federation", description=__doc__, epilog=config_groups(), formatter_class=raw,
        parents=[configs],
    )  # fmt: skip
    train.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. aggregation=local federation.rounds=3")
    train.add_argument(
        "--print-config", action="store_true",
        help="check the config as a run does up to its data (nothing is read or started), print it and exit",
    )  # fmt: skip
    train.set_defaults(func=_train)
    data = sub.add_parser("data", help="look at the data").add_subparsers(dest="data_command", required=True)
    preview = data.add_parser(
        "preview", help="write a PNG of a few samples beside every task's target", parents=[configs]
    )
    preview.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data=fashion_scenes")
    preview.add_argument("--n", type=int, default=6, help="samples to show (default 6)")
    preview.add_argument("--out", default="outputs/data_preview.png", help="PNG path")
    preview.set_defaults(func=_data_preview)
    sweep = sub.add_parser("sweep", help="run a grid of federations on Ray Tune (configs/sweep/)", parents=[configs])
    sweep.add_argument("overrides", nargs="*", help="sweep=<name> plus overrides for every trial")
    sweep.set_defaults(func=lambda args: _many(args, "sweep"))
    bench = sub.add_parser(
        "benchmark",
        help="strategies x seeds on Ray Tune, with intervals and paired tests (configs/benchmark/)",
        parents=[configs],
    )
    bench.add_argument("overrides", nargs="*", help="benchmark=<name> plus overrides for every run")
    bench.set_defaults(func=lambda args: _many(args, "benchmark"))
    report = sub.add_parser("report", help="render a run's curves (PNG) and report.md from history.json")
    report.add_argument("out_dir", help="the run's output directory")
    report.set_defaults(func=_report)
    results = sub.add_parser(
        "results", help="recompute a benchmark's statistics, markdown and PNGs from its results JSON alone"
    )
    results.add_argument("path", help="a benchmark folder, its results.json, or docs/results/<benchmark>.json")
    results.add_argument("--out", default=None, help="folder to write to (default: beside the JSON)")
    results.set_defaults(func=_results)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mfed`` command."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    early = argparse.ArgumentParser(add_help=False)  # --config-dir first: --help lists the groups it adds
    early.add_argument("--config-dir", action="append", default=[])
    given = early.parse_known_args(argv)[0].config_dir
    if given:
        from mfed.config_dir import add_user_dirs

        add_user_dirs(given)
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
