"""Download a model file: resumable, with progress, cancel and sha256 verification.

Model files are tens to hundreds of megabytes and home connections drop. Bytes go to `DEST.part`; a later call
asks the server for the rest with an HTTP Range request. Only a complete file whose checksum matches is renamed
to `DEST` (atomically), so `DEST` is never half-written. A checksum mismatch deletes the partial file, since
resuming it would only reproduce the same bad bytes. Standard library only (urllib).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

from stemgui.errors import Cancelled, DownloadError

__all__ = ["download", "part_path"]

ProgressFn = Callable[[int, "int | None"], None]
CHUNK = 1 << 16


def part_path(dest: str | os.PathLike) -> Path:
    """Where the bytes of an unfinished download of `dest` are kept."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def _is_cancelled(cancel: Any) -> bool:
    if cancel is None:
        return False
    flag = getattr(cancel, "is_cancelled", cancel)
    return bool(flag() if callable(flag) else flag)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _total_from_content_range(value: str | None) -> tuple[int | None, int | None]:
    """(start, total) of a `Content-Range: bytes START-END/TOTAL` (or `bytes */TOTAL`) header."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if not match:
        return None, None
    start = int(match.group(1)) if match.group(1) else None
    total = int(match.group(2)) if match.group(2) != "*" else None
    return start, total


def _open(url: str, offset: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "StemGUI", "Accept-Encoding": "identity"})  # noqa: S310 (scheme checked by the caller)
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (scheme checked by the caller)


def _finish(part: Path, dest: Path, url: str, sha256: str | None) -> Path:
    if sha256 is not None:
        actual = _sha256(part)
        if not actual.startswith(sha256.lower()):
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"{url}: checksum mismatch for {dest.name} (expected {sha256.lower()[:16]}…, got {actual[:16]}…); "
                "the partial download was removed"
            )
    os.replace(part, dest)
    return dest


def download(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    progress: ProgressFn | None = None,
    cancel: Any = None,
    *,
    timeout: float = 30.0,
) -> Path:
    """Fetch `url` into `dest`, resuming `dest.part` if an earlier attempt left one; returns `dest`.

    `progress(done_bytes, total_bytes_or_None)` is called as bytes arrive. `cancel` is a CancelToken (or any
    object with `is_cancelled`, or a callable) checked between chunks; cancelling raises Cancelled and keeps
    the partial file for a later resume. `sha256` may be a prefix of the digest (Demucs file names carry its
    first 8 hex digits). `sha256` may be a prefix (the Demucs file names carry 8 hex digits of
    it). Network and HTTP failures raise DownloadError (the partial file is
    kept so the next call resumes); a checksum mismatch raises DownloadError and deletes it.
    """
    dest = Path(dest)
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise DownloadError(f"{url}: only http:// and https:// downloads are supported")
    if dest.is_dir():
        raise DownloadError(f"{dest}: is a folder, not a file name")
    if dest.is_file() and sha256 is not None and _sha256(dest).startswith(sha256.lower()):
        if progress:
            size = dest.stat().st_size
            progress(size, size)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    offset = part.stat().st_size if part.is_file() else 0

    try:
        try:
            response = _open(url, offset, timeout)
        except urllib.error.HTTPError as exc:
            if exc.code != 416 or not offset:
                raise
            # Range not satisfiable: the partial file is already complete (or longer than the file).
            _, total = _total_from_content_range(exc.headers.get("Content-Range"))
            exc.close()
            if total == offset:
                if progress:
                    progress(offset, total)
                return _finish(part, dest, url, sha256)
            part.unlink(missing_ok=True)
            offset = 0
            response = _open(url, 0, timeout)
        with response:
            status = getattr(response, "status", 200)
            length = response.headers.get("Content-Length")
            length = int(length) if length and length.isdigit() else None
            if status == 206:
                start, total = _total_from_content_range(response.headers.get("Content-Range"))
                if start != offset:
                    raise DownloadError(f"{url}: the server resumed at the wrong position; delete {part} and retry")
                if total is None and length is not None:
                    total = offset + length
                mode = "ab"
            else:  # 200: the server ignored the Range header, start over
                offset, total, mode = 0, length, "wb"
            done = offset
            if progress:
                progress(done, total)
            with open(part, mode) as out:
                while True:
                    if _is_cancelled(cancel):
                        raise Cancelled(f"{url}: download cancelled ({done} bytes kept in {part.name} to resume)")
                    block = response.read(CHUNK)
                    if not block:
                        break
                    out.write(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: HTTP error {exc.code} ({exc.reason})") from None
    except urllib.error.URLError as exc:
        raise DownloadError(f"{url}: cannot connect ({exc.reason})") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:  # dropped connection, timeout, short body
        kept = part.stat().st_size if part.is_file() else 0
        raise DownloadError(
            f"{url}: download interrupted after {kept} bytes ({type(exc).__name__}); run it again to resume"
        ) from None
    if total is not None and done != total:
        raise DownloadError(f"{url}: download interrupted after {done} of {total} bytes; run it again to resume")
    return _finish(part, dest, url, sha256)
