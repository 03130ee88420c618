"""A CSV logger that a resumed run appends to, instead of Lightning's, which deletes the old file."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class AppendingWriter(ExperimentWriter):
    """Keeps the rows of ``metrics.csv`` of steps before ``keep_until`` (the resumed checkpoint's step) and appends."""

    def __init__(self, log_dir: str, keep_until: int | None) -> None:
        self.keep_until = keep_until
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        if self.keep_until is None:  # a fresh run never inherits rows
            path.unlink()
            return
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            rows = [r for r in reader if _step(r) < self.keep_until]
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
        self.metrics_keys = sorted(header)


def _step(row: dict[str, str]) -> float:
    """The row's step (infinite for a row without one, so that it is dropped)."""
    try:
        return float(row.get("step") or "inf")
    except ValueError:
        return float("inf")


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` writing ``<save_dir>/logs/metrics.csv``; a resume drops rows of steps >= ``keep_until``."""

    def __init__(self, save_dir: str, keep_until: int | None = None) -> None:
        super().__init__(save_dir=save_dir, name="logs", version="")
        self.keep_until = keep_until

    @property
    def experiment(self) -> ExperimentWriter:
        """The writer (created on first use, which is when old rows are trimmed)."""
        if not isinstance(self._experiment, AppendingWriter):
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingWriter(self.log_dir, self.keep_until)
        return self._experiment
