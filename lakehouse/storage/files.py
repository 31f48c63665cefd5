"""Files under a table's location, on local disk or object storage (for maintenance).

Table maintenance (vacuum, erasure, drop, rename) needs what the table formats do not
offer: list every file under a location with its size, delete files, move a folder.
This goes through a ``pyarrow.fs`` filesystem built from the same options the formats
get (:func:`lakehouse.storage.uri.resolve` for S3).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import StorageError
from .uri import resolve, scheme


@dataclass(frozen=True)
class StoredFile:
    """One file: its URI (same scheme as the location listed), size and modification time."""

    uri: str
    size: int
    mtime: float | None = None


def filesystem(uri: str, options: Mapping[str, str] | None = None) -> tuple[Any, str]:
    """``(pyarrow filesystem, path inside it)`` for ``uri``."""
    import pyarrow.fs as pafs

    kind = scheme(uri)
    if kind == "file":
        path = uri[len("file://") :] if uri.startswith("file://") else uri
        return pafs.LocalFileSystem(), path
    if kind in ("s3", "s3a"):
        aws = resolve(uri, options)
        kwargs: dict[str, Any] = {}
        if aws.get("AWS_ACCESS_KEY_ID"):
            kwargs["access_key"] = aws["AWS_ACCESS_KEY_ID"]
            kwargs["secret_key"] = aws.get("AWS_SECRET_ACCESS_KEY")
            if aws.get("AWS_SESSION_TOKEN"):
                kwargs["session_token"] = aws["AWS_SESSION_TOKEN"]
        if aws.get("AWS_REGION"):
            kwargs["region"] = aws["AWS_REGION"]
        endpoint = aws.get("AWS_ENDPOINT_URL")
        if endpoint:
            kwargs["scheme"] = "http" if endpoint.startswith("http://") else "https"
            kwargs["endpoint_override"] = endpoint.split("://", 1)[-1].rstrip("/")
        return pafs.S3FileSystem(**kwargs), uri.split("://", 1)[1]
    fs, path = pafs.FileSystem.from_uri(uri)
    return fs, path


def _join(base_uri: str, base_path: str, path: str) -> str:
    """The URI of ``path`` (a path inside the filesystem of ``base_uri``)."""
    rel = path[len(base_path) :].lstrip("/") if path.startswith(base_path) else path
    return f"{base_uri.rstrip('/')}/{rel}" if rel else base_uri


def list_files(uri: str, options: Mapping[str, str] | None = None) -> list[StoredFile]:
    """Every file under ``uri`` (recursively); empty when the location does not exist."""
    import pyarrow.fs as pafs

    fs, path = filesystem(uri, options)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    except OSError as exc:
        raise StorageError(
            f"cannot list {uri}: {exc}", hint="check that the storage is reachable"
        ) from exc
    out = []
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        mtime = info.mtime.timestamp() if info.mtime is not None else None
        out.append(StoredFile(_join(uri, path, info.path), int(info.size or 0), mtime))
    return out


def delete_files(uris: Iterable[str], options: Mapping[str, str] | None = None) -> int:
    """Delete files (missing ones are ignored); returns how many were deleted."""
    done = 0
    cache: dict[str, Any] = {}
    for uri in uris:
        root = uri.split("/", 3)[:3] if "://" in uri else ["file"]
        key = "/".join(root)
        if key not in cache:
            cache[key] = filesystem(uri, options)[0]
        fs = cache[key]
        path = (
            filesystem(uri, options)[1]
            if key == "file" or uri.startswith("file://")
            else uri.split("://", 1)[1]
        )
        try:
            fs.delete_file(path)
            done += 1
        except FileNotFoundError:
            continue
        except OSError as exc:
            text = str(exc).lower()
            if "not found" in text or "does not exist" in text or "no such" in text:
                continue
            raise StorageError(
                f"cannot delete {uri}: {exc}", hint="check write permissions on the storage"
            ) from exc
    return done


def own_files(
    uri: str, options: Mapping[str, str] | None = None
) -> tuple[list[StoredFile], set[str]]:
    """The files under a table root ``uri`` that belong to it, and the relative folders of
    other tables nested below it (left alone)."""
    root = uri.rstrip("/")
    files = list_files(uri, options)
    nested = nested_tables(f.uri[len(root) + 1 :] for f in files)
    return [f for f in files if outside(f.uri[len(root) + 1 :], nested)], nested


def delete_tree(uri: str, options: Mapping[str, str] | None = None) -> tuple[int, int]:
    """Delete a table folder (tables nested below it stay); returns ``(files, bytes)``."""
    files, nested = own_files(uri, options)
    delete_files((f.uri for f in files), options)
    if not nested:
        fs, path = filesystem(uri, options)
        with contextlib.suppress(FileNotFoundError, OSError):
            fs.delete_dir(path)
    return len(files), sum(f.size for f in files)


def move_tree(src: str, dst: str, options: Mapping[str, str] | None = None) -> int:
    """Move a table folder to ``dst`` (tables nested below ``src`` stay where they are).

    A local folder without nested tables is renamed in one step; otherwise every file is
    moved (object stores: copied, then deleted). Returns the number of files moved.
    """
    import os

    fs, src_path = filesystem(src, options)
    _, dst_path = filesystem(dst, options)
    files, nested = own_files(src, options)
    local = scheme(src) == "file"
    if local and not nested:
        os.makedirs(os.path.dirname(dst_path.rstrip("/")) or ".", exist_ok=True)
        os.replace(src_path, dst_path)
        return len(files)
    for f in files:
        rel = f.uri[len(src.rstrip("/")) + 1 :]
        target = f"{dst_path.rstrip('/')}/{rel}"
        if local:
            os.renames(filesystem(f.uri, options)[1], target)
        else:
            fs.copy_file(f.uri.split("://", 1)[1], target)
    if not local:
        delete_files((f.uri for f in files), options)
    if not nested:
        with contextlib.suppress(FileNotFoundError, OSError):
            fs.delete_dir(src_path)  # object stores: the folder markers left behind
    return len(files)


def exists(uri: str, options: Mapping[str, str] | None = None) -> bool:
    import pyarrow.fs as pafs

    fs, path = filesystem(uri, options)
    return bool(fs.get_file_info(path).type != pafs.FileType.NotFound)


def nested_tables(relative: Iterable[str]) -> set[str]:
    """Folders (relative paths) holding another table below a table's root: a Delta
    ``_delta_log`` or Iceberg ``metadata/*.metadata.json`` that is not the root's own
    (an asset ``sales`` and an asset ``sales/orders`` nest). Stage tables of Delta
    write-audit-publish (``lakehouse-stage/``) are the root's own and not counted."""
    roots: set[str] = set()
    for path in relative:
        parts = path.split("/")
        for i, part in enumerate(parts[:-1]):
            if i == 0 or parts[0] == "lakehouse-stage":
                continue
            if part == "_delta_log" or (
                part == "metadata" and parts[-1].endswith(".metadata.json")
            ):
                roots.add("/".join(parts[:i]))
                break
    return roots


def outside(path: str, roots: Iterable[str]) -> bool:
    """Whether the relative ``path`` lies in none of the folders ``roots``."""
    return not any(path == r or path.startswith(r + "/") for r in roots)
