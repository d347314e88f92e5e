"""The bytes behind an image or audio input: inline base64, or a file under the blob folder.

An input is an object, either ``{"base64": "...", "filename": "a.png"}`` (what
``pipeq submit --file`` sends; ``filename`` is optional and only used in
messages) or ``{"file": "relative/path"}``, a file under
``Settings.resolved_blob_dir`` (``PIPEQ_BLOB_DIR``) that a producer put there.
A file reference never leaves that folder: absolute paths and ``..`` are
refused, and the path is resolved (following symlinks) and checked to lie
inside it. URLs are never fetched.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

from shared.errors import InvalidInput
from shared.settings import get_settings

INLINE_KEYS = {"base64", "filename"}
FILE_KEYS = {"file"}


def payload_bytes(item: Any, *, where: str, blob_dir: Path | None = None) -> bytes:
    """The raw bytes of one media input; raises :class:`InvalidInput` saying what is wrong."""
    if isinstance(item, str):
        hint = "URLs are not fetched; " if item.startswith(("http://", "https://")) else ""
        raise InvalidInput(
            f'{where}: {hint}expected {{"base64": "..."}} or {{"file": "relative/path"}}'
        )
    if not isinstance(item, dict):
        raise InvalidInput(
            f'{where}: expected {{"base64": "..."}} or {{"file": "relative/path"}}, '
            f"got {type(item).__name__}"
        )
    keys = set(item)
    if "base64" in item and keys <= INLINE_KEYS:
        return _from_base64(item["base64"], where=where)
    if "file" in item and keys <= FILE_KEYS:
        return _from_file(item["file"], where=where, blob_dir=blob_dir)
    if "url" in item:
        raise InvalidInput(f"{where}: URLs are not fetched; send base64 or a file reference")
    raise InvalidInput(
        f"{where}: expected the keys base64 (and optionally filename) or file, "
        f"got {', '.join(sorted(map(str, keys))) or 'none'}"
    )


def describe(item: Any) -> str:
    """A short name for an input in error messages: its filename or file reference."""
    if isinstance(item, dict):
        name = item.get("filename") or item.get("file")
        if isinstance(name, str):
            return f" ({name[:80]})"
    return ""


def _from_base64(text: Any, *, where: str) -> bytes:
    if not isinstance(text, str):
        raise InvalidInput(f"{where}.base64: expected a string, got {type(text).__name__}")
    if text.startswith("data:") and "," in text:  # a data URL: keep what follows the comma
        text = text.split(",", 1)[1]
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"{where}.base64: not valid base64 ({exc})") from None
    if not data:
        raise InvalidInput(f"{where}.base64: empty")
    return data


def resolve_blob(reference: Any, *, where: str, blob_dir: Path | None = None) -> Path:
    """The file ``reference`` names under the blob folder; refuses any path that leaves it."""
    if not isinstance(reference, str) or not reference.strip():
        raise InvalidInput(f"{where}.file: expected a relative path")
    if "\x00" in reference:
        raise InvalidInput(f"{where}.file: the path contains a NUL byte")
    relative = Path(reference)
    if relative.is_absolute() or reference.startswith(("/", "\\")):
        raise InvalidInput(f"{where}.file: {reference!r} is absolute; give a path under the blobs")
    if ".." in relative.parts:
        raise InvalidInput(f"{where}.file: {reference!r} may not contain '..'")
    root = (blob_dir or get_settings().resolved_blob_dir).resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise InvalidInput(f"{where}.file: {reference!r} leads outside the blob folder")
    if not path.is_file():
        raise InvalidInput(f"{where}.file: {reference!r} is not a file in the blob folder")
    return path


def _from_file(reference: Any, *, where: str, blob_dir: Path | None) -> bytes:
    path = resolve_blob(reference, where=where, blob_dir=blob_dir)
    limit = get_settings().max_file_bytes
    size = path.stat().st_size
    if size > limit:
        raise InvalidInput(f"{where}.file: {reference!r} is {size} bytes; the limit is {limit}")
    if size == 0:
        raise InvalidInput(f"{where}.file: {reference!r} is empty")
    return path.read_bytes()
