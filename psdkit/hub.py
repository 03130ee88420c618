"""Where model weights come from: a local folder, the Hugging Face cache, or a download.

Every plugin that loads weights goes through :func:`resolve`. It never hangs: with ``HF_HUB_OFFLINE=1``
(or when the hub cannot be reached within a few seconds) a model that is not local fails at once with
a :class:`~psdkit.errors.MissingWeightsError` that names the model and says how to provide it.
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
from pathlib import Path
from typing import Any

from psdkit.errors import MissingWeightsError, PluginError

HUB_HOST = "huggingface.co"


def offline() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) asks for no network."""
    flags = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in flags)


def is_local(ref: str) -> bool:
    """Whether ``ref`` names an existing local file or folder."""
    return Path(ref).expanduser().exists()


def in_cache(repo_id: str, filename: str, revision: str | None = None) -> bool:
    """Whether ``filename`` of ``repo_id`` is in the local Hugging Face cache (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    found = try_to_load_from_cache(repo_id, filename, revision=revision)
    return isinstance(found, str)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub answers a TCP connection within ``timeout`` seconds (DNS included)."""

    def probe() -> bool:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(probe)
        try:
            return future.result(timeout=timeout)
        except Exception:  # noqa: BLE001 - any failure means "not reachable now"
            return False


def how_to_get(ref: str, what: str, gated: str | None = None) -> str:
    """The instructions part of a missing-weights message."""
    lines = [
        f"{what}: cannot load {ref!r}: it is not a local path and not in the Hugging Face cache "
        f"({os.environ.get('HF_HOME', '~/.cache/huggingface')})"
        + (" and HF_HUB_OFFLINE is set" if offline() else " and the hub is not reachable"),
        f"  - on a machine with network: huggingface-cli download {ref}  (then copy the cache, or set HF_HOME)",
        "  - or point the recipe at a local folder saved with save_pretrained",
    ]
    if gated:
        lines.insert(
            1,
            f"  - {ref} is gated: accept its licence at https://huggingface.co/{ref} and "
            f"log in with `huggingface-cli login` first ({gated})",
        )
    return "\n".join(lines)


def resolve(ref: str, what: str, probe_file: str, gated: str | None = None) -> tuple[str, bool]:
    """Decide how to load ``ref``: returns (ref, local_files_only).

    Raises:
        MissingWeightsError: not local, not cached, and offline or the hub is unreachable.
    """
    if is_local(ref):
        return str(Path(ref).expanduser()), True
    if in_cache(ref, probe_file):
        return ref, True
    if offline() or not hub_reachable():
        raise MissingWeightsError(how_to_get(ref, what, gated))
    return ref, False


def status(ref: str, probe_file: str) -> bool:
    """Whether ``ref`` can be loaded without the network (for ``psdkit doctor``)."""
    return is_local(ref) or in_cache(ref, probe_file)


def resolve_file(ref: str, filename: str, what: str, revision: str | None = None) -> Path:
    """A local path to ``filename``: ``ref`` itself if it is a file, inside ``ref`` if it is a folder,
    else from the cache or downloaded from hub repo ``ref``.

    Raises:
        MissingWeightsError: not local, not cached, and offline or the hub is unreachable.
    """
    path = Path(ref).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        if (path / filename).is_file():
            return path / filename
        raise MissingWeightsError(f"{what}: {path} has no {filename}")
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(ref, filename, revision=revision)
    if isinstance(cached, str):
        return Path(cached)
    if offline() or not hub_reachable():
        raise MissingWeightsError(
            how_to_get(f"{ref}/{filename}", what).replace(
                f"huggingface-cli download {ref}/{filename}", f"huggingface-cli download {ref} {filename}"
            )
        )
    return Path(hf_hub_download(ref, filename, revision=revision))


def file_status(ref: str, filename: str) -> bool:
    """Whether ``filename`` of ``ref`` is available without the network."""
    path = Path(ref).expanduser()
    if path.is_file():
        return True
    if path.is_dir():
        return (path / filename).is_file()
    return in_cache(ref, filename)


def declared_weights(components: list[Any]) -> list[tuple[Any, str, bool]]:
    """``(component, what, present locally)`` for every weight the components' contracts declare."""
    from psdkit.contracts.weights import LoadsWeights

    return [
        (comp, item, present)
        for comp in components
        if issubclass(comp.cls, LoadsWeights)
        for item, present in comp.cls.required_weights(comp.config)
    ]


def missing_extras(components: list[Any]) -> list[str]:
    """One line per Python package a component needs that is not installed, with the pip command."""
    from psdkit.contracts.weights import LoadsWeights, missing_packages

    return [
        f"{comp.key} ({comp.info.name}) needs the Python package {mod}: pip install '{req}'"
        for comp in components
        if issubclass(comp.cls, LoadsWeights)
        for mod, req in missing_packages(comp.cls)
    ]


DOWNLOAD_HINT = (
    "Download them on a machine with network (huggingface-cli download REPO [FILE]) and copy the "
    "Hugging Face cache here (or set HF_HOME), or point the recipe keys at local folders/files."
)


def preflight(components: list[Any]) -> None:
    """Fail before any model loads if a package the components need is missing, or weights are missing and
    cannot be downloaded now.

    ``components`` are resolved recipe components (``cls``, ``config``, ``key``, ``info``); priors and rewards
    declare their weights with :meth:`~psdkit.contracts.weights.LoadsWeights.required_weights`.
    """
    extras = missing_extras(components)
    if extras:
        raise PluginError("\n".join(extras))
    missing = []
    for comp, item, present in declared_weights(components):
        if not present:
            missing.append(f"  {comp.key} ({comp.info.name}): {item}")
    if not missing or (not offline() and hub_reachable()):
        return
    why = "HF_HUB_OFFLINE is set" if offline() else f"{HUB_HOST} is not reachable"
    raise MissingWeightsError(
        "weights not found locally and "
        + why
        + ":\n"
        + "\n".join(missing)
        + f"\n{DOWNLOAD_HINT} `psdkit doctor RECIPE` lists what is present."
    )
