"""Fuzz: malformed recipes, overrides and argument lists exit 0 or 2 with one message, never a traceback.

Cases are mutations of the shipped analytic-world recipes (wrong types, out-of-range and non-finite
numbers, unknown keys at every depth, duplicate keys, bad encodings, missing files) and argument lists
built from every sub-command's options. Every case runs the real CLI in this process; a case that exits
2 must leave no run directory behind. The generator is seeded, so a finding reproduces.
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from tiny_overrides import TINY_QUICKSTART

from psdkit.cli.main import main
from psdkit.run.rundir import MARKER

ROOT = Path(__file__).resolve().parents[1]
RECIPES = [ROOT / "recipes" / n for n in ("quickstart.yaml", "quickstart_sds.yaml", "psd_2d.yaml")]
BAD_VALUES: list[Any] = [
    "text",
    "",
    None,
    True,
    [],
    [1, 2],
    {},
    {"a": 1},
    -1,
    0,
    10**12,
    -(10**12),
    1e308,
    float("inf"),
    float("-inf"),
    float("nan"),
    0.5,
    "1e-8",
    ".inf",
]
RECIPE_CASES, OVERRIDE_CASES, ARGV_CASES, FIT_CASES = 150, 150, 80, 8
TINY = [*TINY_QUICKSTART, "trainer.max_steps=2"]


def leaves(data: Any, prefix: str = "") -> list[str]:
    """Every dotted path of a nested mapping (mappings and leaves both)."""
    out = []
    if isinstance(data, dict):
        for k, v in data.items():
            path = f"{prefix}{k}"
            out.append(path)
            out += leaves(v, path + ".")
    return out


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = data
    for p in parents:
        node = node[p]
    node[leaf] = value


def resolved(recipe: Path) -> dict[str, Any]:
    """The recipe with its base merged (what a mutation starts from)."""
    from psdkit.config.recipe import load_file

    return load_file(recipe)


def recipe_case(rng: random.Random, tmp: Path) -> list[str]:
    """A mutated recipe file given to ``fit --validate-only``."""
    data = resolved(rng.choice(RECIPES))
    kind = rng.choice(["value", "value", "unknown", "delete", "duplicate", "bytes", "truncate", "notmap"])
    path = rng.choice(leaves(data))
    if kind == "value":
        set_path(data, path, rng.choice(BAD_VALUES))
    elif kind == "unknown":
        parent = path.rpartition(".")[0]
        set_path(data, f"{parent}.no_such_key" if parent else "no_such_key", 1)
    elif kind == "delete":
        *parents, leaf = path.split(".")
        node = data
        for p in parents:
            node = node[p]
        del node[leaf]
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if kind == "duplicate":
        text += f"{rng.choice(list(data))}: {{}}\n"
    elif kind == "notmap":
        text = rng.choice(["- a\n- b\n", "just text\n", "42\n", "", "{a: [\n"])
    blob = text.encode()
    if kind == "bytes":
        i = rng.randrange(len(blob))
        blob = blob[:i] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 4))) + blob[i:]
    elif kind == "truncate":
        blob = blob[: rng.randrange(len(blob))]
    file = tmp / f"r{rng.randrange(10**9)}.yaml"
    file.write_bytes(blob)
    return ["fit", str(file), f"output.root={tmp / 'runs'}", "--validate-only"]


def override_case(rng: random.Random, tmp: Path) -> list[str]:
    """The shipped recipe with one to three bad overrides, ``fit --validate-only``."""
    recipe = rng.choice(RECIPES)
    paths = leaves(resolved(recipe)) + ["nope", "guidance.config.nope", "trainer.nope.deeper", "prompt..text"]
    overrides = []
    for _ in range(rng.randint(1, 3)):
        value = rng.choice(BAD_VALUES)
        raw = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
        raw = rng.choices([raw, "[", "{a: 1, a: 2}", "\udcff"], weights=[17, 1, 1, 1])[0]
        overrides.append(f"{rng.choice(paths)}={raw}")
    return ["fit", str(recipe), f"output.root={tmp / 'runs'}", *overrides, "--validate-only"]


def argv_case(rng: random.Random, tmp: Path) -> list[str]:
    """A random argument list of a sub-command that cannot start a long job."""
    missing, directory, binary = str(tmp / "missing.yaml"), str(tmp), str(tmp / "binary.yaml")
    Path(binary).write_bytes(b"\xff\xfe\x00junk")
    not_a_run = tmp / "not_a_run"
    not_a_run.mkdir(exist_ok=True)
    fake = tmp / "fake_run"
    (fake / "checkpoints").mkdir(parents=True, exist_ok=True)
    (fake / "recipe.yaml").write_text(RECIPES[0].read_text())
    (fake / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")
    values = [missing, directory, binary, "-1", "0", "x", "", "--", "a=b", "=", str(not_a_run), str(fake)]
    choices = [
        ["eval", rng.choice([missing, str(not_a_run), str(fake), binary])]
        + rng.choice([[], ["--views", rng.choice(values)], ["--resolution", rng.choice(values)], ["--compare"]]),
        ["fit", rng.choice([missing, directory, binary])] + rng.sample(["--overwrite", "a=1", "--resume"], 1),
        ["fit", str(RECIPES[0]), "--resume", rng.choice([missing, str(not_a_run), str(fake)])],
        ["sweep", rng.choice([missing, directory, binary, str(RECIPES[0])]), "--dry-run"],
        ["sweep", str(ROOT / "sweeps" / "prompts.yaml"), "--local", rng.choice(["grid", "random", "bayes", "x"])]
        + ["--count", rng.choice(values), "--dry-run"],
        ["plugins", rng.choice(["reward", "rewards", "shaders", "", "guidance"])],
        ["show", rng.choice(["reward", "rewards", "prior", "x"]), rng.choice(["analytic", "nope", ""])],
        ["doctor", rng.choice([missing, directory, binary])],
        ["bench", rng.choice(["speed", "alignment", "hashgrid", "nope"]), "--steps", rng.choice(["0", "-3", "x"])],
        [rng.choice(["", "fitt", "-x", "--nope"])],
    ]
    return rng.choice(choices)


def fit_case(rng: random.Random, tmp: Path) -> list[str]:
    """A real (two-step) fit with one mutated override: trains or refuses, never a traceback."""
    path = rng.choice(["guidance.config.guidance_scale", "seed", "camera.config.width", "name", "trainer.val_every"])
    value = rng.choice(["nan", "-5", "''", "../x", "8193", "[1]", "1e-8", "3", "3", "3"])
    return ["fit", str(RECIPES[0]), f"output.root={tmp / 'runs'}", *TINY, f"{path}={value}"]


def run(argv: list[str]) -> tuple[int, str]:
    """Exit code and stderr of the CLI; an escaping exception is reported as exit -1 with a traceback."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
        except BaseException as exc:  # noqa: BLE001 - anything else is the traceback we hunt
            return -1, f"Traceback: {type(exc).__name__}: {exc}"
    return code, err.getvalue()


def run_dirs(root: Path) -> list[Path]:
    return [p.parent for p in root.rglob(MARKER)] if root.exists() else []


@pytest.mark.filterwarnings("ignore")
def test_fuzzed_cli_never_shows_a_traceback(tmp_path, monkeypatch):
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for handler in [h for lg in loggers for h in getattr(lg, "handlers", [])]:
        if isinstance(handler, logging.StreamHandler) and getattr(handler.stream, "closed", False):
            monkeypatch.setattr(handler, "stream", io.StringIO())  # an earlier test's closed capture, not ours
    rng = random.Random(20261129)
    makers = [(recipe_case, RECIPE_CASES), (override_case, OVERRIDE_CASES), (argv_case, ARGV_CASES)]
    makers.append((fit_case, FIT_CASES))
    counts = {0: 0, 2: 0}
    findings = []
    for make, n in makers:
        for i in range(n):
            case = tmp_path / f"{make.__name__}-{i}"
            case.mkdir()
            argv = make(rng, case)
            code, err = run(argv)
            shown = f"psdkit {' '.join(argv)}\n  -> exit {code}: {err.strip()[:600]}"
            if code not in (0, 2) or "Traceback" in err:
                findings.append(shown)
            elif code == 2 and (not err.strip() or run_dirs(case)):
                findings.append(f"{shown} (no message, or a run directory left behind)")
            else:
                counts[code] += 1
    assert not findings, f"{len(findings)} finding(s):\n" + "\n".join(findings)
    total = RECIPE_CASES + OVERRIDE_CASES + ARGV_CASES + FIT_CASES
    assert sum(counts.values()) == total
    assert counts[2] > total // 2, f"the mutations should mostly be refused: {counts}"
