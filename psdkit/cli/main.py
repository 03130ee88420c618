"""``psdkit`` entry point: sub-commands, and one place that turns errors into exit codes."""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import warnings
from collections.abc import Callable
from typing import Any

import psdkit
from psdkit.errors import PsdkitError, PsdkitWarning


def _lazy(target: str) -> Callable[[argparse.Namespace], int]:
    """A sub-command handler that imports ``module:function`` only when the command runs."""

    def run(args: argparse.Namespace) -> int:
        module, _, name = target.partition(":")
        return getattr(importlib.import_module(module), name)(args)

    return run


def _add_fit(sub: Any) -> None:
    fit = sub.add_parser("fit", help="train a recipe")
    fit.add_argument("recipe", help="recipe YAML file")
    fit.add_argument("overrides", nargs="*", default=[], help="key.path=value overrides")
    fit.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    fit.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a run from its last checkpoint ('auto': the recipe's run directory if it has one)",
    )
    fit.add_argument("--run-dir", help="run directory (default: <output.root>/<name>)")
    fit.add_argument("--validate-only", action="store_true", help="check the recipe and exit")
    fit.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    fit.set_defaults(func=_lazy("psdkit.cli.fit_cmd:run_fit"))


def _add_inspection(sub: Any) -> None:
    plugins = sub.add_parser("plugins", help="list installed components and mark those that fail to import")
    plugins.add_argument("kind", nargs="?", help="only this kind (reward or rewards, ...)")
    plugins.add_argument("--fast", action="store_true", help="read the metadata only: import and check nothing")
    plugins.set_defaults(func=_lazy("psdkit.cli.plugins_cmd:list_plugins"))
    show = sub.add_parser("show", help="document one plugin's config")
    show.add_argument("kind")
    show.add_argument("name")
    show.set_defaults(func=_lazy("psdkit.cli.plugins_cmd:show_plugin"))
    doctor = sub.add_parser("doctor", help="versions, devices, fast paths, weights")
    doctor.add_argument("recipe", nargs="?", help="also check what this recipe needs")
    doctor.set_defaults(func=_lazy("psdkit.cli.doctor_cmd:doctor"))


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, found {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}, found {value}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    return _int_at_least(text, 0)


def list_item(text: str) -> str:
    """An argparse type for the items of a list option (``--prompts a b``): refuses a ``key.path=value`` override,
    which the list would otherwise swallow silently."""
    if re.match(r"^[A-Za-z_][\w-]*(\.[\w-]+)*=", text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is an override, not a list item: put overrides before the list option or end the list with --"
        )
    return text


def _add_eval(sub: Any) -> None:
    ev = sub.add_parser(
        "eval",
        help="score finished runs (eval.json, contact sheet, reward-hacking flag: wrong object, held-out down while "
        "train up, prior fit collapsed)",
    )
    ev.add_argument("runs", nargs="+", help="run directories")
    ev.add_argument("--rewards", nargs="+", help="reward plugins to score with (default: the recipe's)")
    ev.add_argument(
        "--views",
        type=positive_int,
        help="orbit views to render (default: the run's output.eval_views, as metrics.json)",
    )
    ev.add_argument(
        "--resolution",
        type=positive_int,
        help="side of the renders, pixels (default: the run's output.eval_resolution, as metrics.json)",
    )
    ev.add_argument("--compare", action="store_true", help="print one table of all runs")
    ev.add_argument(
        "--mesh",
        action="store_true",
        help="also render the run's exported mesh file from the same views and score it (psdkit export first)",
    )
    ev.add_argument(
        "--psnr-floor",
        type=float,
        default=20.0,
        help="hacking flag: prior fit collapsed below this PSNR (dB) to the prompt's objects (default: %(default)s)",
    )
    ev.add_argument(
        "--psnr-drop",
        type=float,
        default=3.0,
        help="hacking flag: ... or fell by more than this (dB) since the earliest checkpoint (default: %(default)s)",
    )
    ev.set_defaults(func=_lazy("psdkit.cli.eval_cmd:evaluate_runs"))
    _add_bench(sub)


def _add_export(sub: Any) -> None:
    ex = sub.add_parser(
        "export",
        help="a finished run's mesh: marching cubes, cleanup, face budget, UV atlas, baked texture (GLB, OBJ, PLY)",
    )
    ex.add_argument("run", help="run directory")
    ex.add_argument(
        "--format",
        nargs="+",
        choices=["glb", "obj", "ply"],
        dest="formats",
        help="files to write (default: the run's output.export.formats)",
    )
    ex.add_argument("--resolution", type=positive_int, help="marching-cubes grid (default: the run's)")
    ex.add_argument("--faces", type=positive_int, help="face budget (default: the run's output.export.faces)")
    ex.add_argument("--texture-size", type=positive_int, help="texture side, texels (default: the run's)")
    ex.add_argument("--level", type=float, help="density level of the surface (default: the run's, or automatic)")
    ex.add_argument("--texture", choices=["uv", "vertex"], help="baked UV texture or vertex colours")
    ex.add_argument("--up", choices=["y", "z"], dest="up_axis", help="up axis of the files (default: y, glTF's)")
    ex.add_argument("--out", help="folder to write into (default: the run directory)")
    ex.set_defaults(func=_lazy("psdkit.cli.export_cmd:export"))


def _add_bench(sub: Any) -> None:
    bench = sub.add_parser("bench", help="benchmarks (docs/benchmarks.md)")
    which = bench.add_subparsers(dest="which", required=True)
    align = which.add_parser("alignment", help="strategies x seeds on the analytic world: rewards and prior fit")
    align.add_argument(
        "--recipes",
        nargs="+",
        type=list_item,
        default=["recipes/quickstart.yaml", "recipes/quickstart_sds.yaml"],
        help="recipes to compare",
    )
    align.add_argument("--seeds", type=positive_int, default=5, help="seeds 0..N-1 per recipe")
    align.add_argument("--json", help="write the rows and summary here")
    align.add_argument("--plot", help="write a PNG scatter of held-out reward against prior fit here")
    align.add_argument("--jobs", type=positive_int, default=1, help="runs in parallel (worker processes)")
    align.add_argument(
        "--prompts", nargs="+", type=list_item, help="prompts to run each recipe on (default: each recipe's)"
    )
    align.add_argument(
        "--rewards",
        nargs="+",
        type=list_item,
        help="training rewards to run each reward-using recipe with (default: each recipe's); the table adds the "
        "reward margin between the prompt's answers and how often the preferred one came out",
    )
    align.add_argument("overrides", nargs="*", default=[], help="key.path=value overrides applied to every run")
    speed = which.add_parser("speed", help="ms per training step of a recipe, split by component")
    speed.add_argument("recipe", help="recipe YAML file")
    speed.add_argument("overrides", nargs="*", default=[], help="key.path=value overrides")
    speed.add_argument(
        "--random-weights",
        nargs="?",
        const="full",
        choices=["full", "tiny"],
        help="build the recipe's real architectures with random weights (no download): full "
        "(published size, default) or tiny",
    )
    speed.add_argument("--steps", type=positive_int, default=20, help="timed steps per phase")
    speed.add_argument(
        "--warmup", type=non_negative_int, default=3, help="untimed first steps (compilation happens here)"
    )
    speed.add_argument("--device", choices=["cpu", "cuda", "gpu"], help="default: the recipe's trainer.accelerator")
    speed.add_argument("--json", help="write the report here")
    grid = which.add_parser("hashgrid", help="hash-encoding forward + backward: every implementation")
    grid.add_argument("--points", type=positive_int, default=131072, help="points encoded")
    grid.add_argument("--levels", type=positive_int, default=12, help="resolution levels")
    grid.add_argument("--log2-table", type=positive_int, default=15, help="log2 of the entries per level")
    grid.add_argument("--features", type=positive_int, default=2, help="features per entry")
    grid.add_argument("--repeats", type=positive_int, default=5, help="timed repeats (median reported)")
    grid.add_argument("--device", default="cpu", help="cpu or cuda")
    grid.add_argument("--only", nargs="+", help="only these implementations")
    grid.add_argument("--json", help="write the result here")
    bench.set_defaults(func=_lazy("psdkit.cli.bench_cmd:bench"))


def _add_sweeps(sub: Any) -> None:
    sweep = sub.add_parser("sweep", help="validate and run a sweep (locally, or create it on W&B)")
    sweep.add_argument("sweep", help="sweep YAML file")
    sweep.add_argument("overrides", nargs="*", default=[], help="key.path=value overrides applied to every trial")
    sweep.add_argument("--local", choices=["grid", "random"], help="run here without a W&B server")
    sweep.add_argument("--count", type=positive_int, help="trials of a random sweep")
    sweep.add_argument("--out", help="parent folder of the sweep's runs (default: the recipe's output.root)")
    sweep.add_argument("--dry-run", action="store_true", help="validate and list the trials only")
    sweep.add_argument("--overwrite", action="store_true", help="replace an existing local sweep directory")
    sweep.add_argument("--resume", action="store_true", help="finish an existing local sweep (skips finished trials)")
    sweep.add_argument("--project", default="psdkit", help="W&B project")
    sweep.add_argument("--entity", help="W&B entity")
    sweep.set_defaults(func=_lazy("psdkit.cli.sweep_cmd:sweep"))
    agent = sub.add_parser("agent", help="run trials of a W&B sweep")
    agent.add_argument("sweep_id")
    agent.add_argument("--count", type=positive_int, help="trials to run (default: until the sweep ends)")
    agent.add_argument("--project", default="psdkit", help="W&B project")
    agent.add_argument("--entity", help="W&B entity")
    agent.set_defaults(func=_lazy("psdkit.cli.sweep_cmd:agent"))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="psdkit", description="Preference-aligned text-to-3D.")
    parser.add_argument("--version", action="version", version=f"psdkit {psdkit.__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_fit, _add_inspection, _add_eval, _add_export, _add_sweeps):
        add(sub)
    return parser


_default_formatwarning = warnings.formatwarning


def _format_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> str:
    """psdkit's own warnings on one line (``psdkit: warning: ...``); others as Python writes them."""
    if issubclass(category, PsdkitWarning):
        return f"psdkit: warning: {message}\n"
    return _default_formatwarning(message, category, *args, **kwargs)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (2 for bad input, no traceback unless --debug)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may follow options (`fit r.yaml --overwrite a.b=1`): argparse leaves them over
    stray = [a for a in extra if "=" not in a or a.startswith("-")]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    args.argv = argv
    warnings.formatwarning = _format_warning
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except PsdkitError as err:
        if args.debug:
            raise
        print(f"psdkit: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("psdkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
