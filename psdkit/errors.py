"""Errors psdkit raises on bad input. Each names what is wrong and where."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class PsdkitWarning(UserWarning):
    """Something the user should know that does not stop the command (the CLI prints it on one line)."""


class PsdkitError(Exception):
    """Base of every error psdkit raises on purpose (the CLI prints these without a traceback)."""

    exit_code: int = 1


class RecipeError(PsdkitError):
    """A recipe (or an override) is malformed.

    Args:
        path: dotted path of the bad key (``guidance.config.guidance_scale``) or a file name.
        problem: what is wrong, in a few words.
        found: the value found, if any.
        allowed: the allowed values or installed names, if the set is finite.
    """

    exit_code = 2

    def __init__(self, path: str, problem: str, found: Any = None, allowed: Iterable[Any] | None = None) -> None:
        self.path, self.problem, self.found = path, problem, found
        self.allowed = list(allowed) if allowed is not None else None
        msg = f"{path}: {problem}"
        if found is not None:
            msg += f" (found {found!r})"
        if self.allowed is not None:
            msg += f"; allowed: {', '.join(map(str, self.allowed)) or '(none installed)'}"
        super().__init__(msg)


class PluginError(PsdkitError):
    """A plugin cannot be used: it fails to import, has the wrong base class, or clashes."""

    exit_code = 2


class MissingWeightsError(PsdkitError):
    """Model weights are not available locally and cannot be downloaded."""

    exit_code = 3


class RunDirError(PsdkitError):
    """The run directory exists and would be overwritten."""

    exit_code = 2


class TrainingDiverged(PsdkitError):
    """Too many consecutive steps had NaN or Inf gradients; the last good state was saved."""

    exit_code = 4


class TrainingInterrupted(PsdkitError):
    """The run was stopped (Ctrl+C or SIGTERM) after saving a checkpoint."""

    exit_code = 130


class OutOfMemory(PsdkitError):
    """The device ran out of memory; the message names the recipe knobs that reduce memory."""

    exit_code = 5
