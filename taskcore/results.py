"""Reading the results archive a Federated Node hands back for a task.

Current FN releases send a zip with the results at its root; older ones send a
gzip tarball of the whole output folder, with the results under ``results/``.
The format is told by the archive's first bytes, never by a file name, and
both come out as the same ``{path: bytes}`` mapping, ready to commit.

The archive is produced by code the researcher wrote, so it is read as
untrusted: only plain files are taken, no path may leave the archive's root,
and the number of files and the bytes unpacked are counted while reading, so
a small archive that would unpack to gigabytes is stopped early.
"""

from __future__ import annotations

import gzip
import io
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from typing import IO

#: The folder the older tarballs put the results in.
TARBALL_RESULTS_FOLDER = "results"
#: Tar headers and padding are unpacked too; allow this much beyond the file bytes.
TAR_OVERHEAD_PER_MEMBER = 1024
TAR_OVERHEAD_FIXED = 2**20
_CHUNK = 2**16


class ResultsArchiveError(ValueError):
    """The archive cannot be delivered as it is; the message says why in one sentence."""


def read_results_archive(data: bytes, *, max_files: int = 1000,
                         max_bytes: int = 100 * 2**20) -> dict[str, bytes]:
    """The files in a zip or gzip tarball of results, by relative path.

    Directories are skipped; links, devices and any path that is absolute or
    climbs out with ``..`` refuse the whole archive, as do more than
    ``max_files`` files or more than ``max_bytes`` bytes once unpacked.
    """
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _read_zip(data, max_files=max_files, max_bytes=max_bytes)
    if data.startswith(b"\x1f\x8b"):
        return _read_tarball(gzip.GzipFile(fileobj=io.BytesIO(data)), max_files=max_files,
                             max_bytes=max_bytes)
    if len(data) >= 262 and data[257:262] == b"ustar":
        return _read_tarball(io.BytesIO(data), max_files=max_files, max_bytes=max_bytes)
    if not data:
        raise ResultsArchiveError("the results archive is empty (0 bytes), not a zip or "
                                  "a gzip tarball")
    raise ResultsArchiveError("the results archive is neither a zip nor a gzip tarball")


def _safe_path(name: str) -> str:
    """A normalised relative path, or the refusal of a name that could escape the root."""
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if name.startswith("/") or (len(name) > 1 and name[0].isalpha() and name[1] == ":"):
        raise ResultsArchiveError(f"the results archive holds an absolute path {name!r}")
    if ".." in parts:
        raise ResultsArchiveError(f"the results archive holds a path {name!r} that climbs "
                                  "out of it with '..'")
    if any(part.lower() == ".git" for part in parts):
        raise ResultsArchiveError(f"the results archive holds {name!r} inside a .git "
                                  "folder, which cannot be committed")
    if not parts:
        raise ResultsArchiveError(f"the results archive holds a file with no name ({name!r})")
    return "/".join(parts)


class _Collector:
    """Gathers files while enforcing the limits, and refuses clashing paths."""

    def __init__(self, *, max_files: int, max_bytes: int) -> None:
        self.max_files = max_files
        self.max_bytes = max_bytes
        self.total = 0
        self.files: dict[str, bytes] = {}

    def add(self, path: str, size_hint: int, stream: IO[bytes]) -> None:
        if path in self.files:
            raise ResultsArchiveError(f"the results archive holds {path!r} twice")
        if len(self.files) >= self.max_files:
            raise ResultsArchiveError(f"the results archive holds more than {self.max_files} "
                                      "files")
        if self.total + max(size_hint, 0) > self.max_bytes:
            raise self.too_large()
        # The size in the header may lie; count what really comes out.
        chunks = []
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            self.total += len(chunk)
            if self.total > self.max_bytes:
                raise self.too_large()
            chunks.append(chunk)
        self.files[path] = b"".join(chunks)

    def too_large(self) -> ResultsArchiveError:
        return ResultsArchiveError(f"the results archive unpacks to more than "
                                   f"{self.max_bytes} bytes")

    def finish(self) -> dict[str, bytes]:
        # Git cannot hold "a" as a file and "a/b" beside it.
        for path in self.files:
            folder = path.rpartition("/")[0]
            while folder:
                if folder in self.files:
                    raise ResultsArchiveError(f"the results archive holds {folder!r} both "
                                              "as a file and as a folder")
                folder = folder.rpartition("/")[0]
        return self.files


def _read_zip(data: bytes, *, max_files: int, max_bytes: int) -> dict[str, bytes]:
    collector = _Collector(max_files=max_files, max_bytes=max_bytes)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise ResultsArchiveError(f"the results archive holds a symbolic link "
                                              f"{info.filename!r}; only files can be "
                                              "delivered")
                if stat.S_IFMT(mode) and not stat.S_ISREG(mode):
                    raise ResultsArchiveError(f"the results archive holds {info.filename!r}, "
                                              "which is not a regular file")
                # Some zip tools on Windows separate folders with backslashes.
                path = _safe_path(info.filename.replace("\\", "/"))
                with archive.open(info) as stream:
                    collector.add(path, info.file_size, stream)
    except ResultsArchiveError:
        raise
    except RuntimeError as error:  # zipfile's answer to an encrypted member
        raise ResultsArchiveError("the results archive is encrypted or unreadable") from error
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
            ValueError) as error:
        raise ResultsArchiveError(f"the results zip is damaged: {error}") from error
    return collector.finish()


class _Bounded(io.RawIOBase):
    """A read-only stream that refuses to give more than ``limit`` bytes.

    Wrapped around the decompressed tarball, it bounds what tarfile itself
    unpacks (headers, long names, pax records), not only the files we read.
    """

    def __init__(self, inner: IO[bytes], limit: int) -> None:
        self.inner = inner
        self.left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.inner.read(min(len(buffer), self.left + 1))
        self.left -= len(data)
        if self.left < 0:
            raise ResultsArchiveError("the results archive unpacks to far more than its "
                                      "files are allowed to hold")
        buffer[: len(data)] = data
        return len(data)


def _tar_members(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while (member := archive.next()) is not None:
        yield member


def _read_tarball(stream: IO[bytes], *, max_files: int, max_bytes: int) -> dict[str, bytes]:
    collector = _Collector(max_files=max_files, max_bytes=max_bytes)
    # Directory entries carry no data but still cost a header each; bound them too.
    max_members = 4 * max_files + 16
    limit = max_bytes + TAR_OVERHEAD_FIXED + TAR_OVERHEAD_PER_MEMBER * max_members
    try:
        with tarfile.open(fileobj=_Bounded(stream, limit), mode="r|") as archive:
            for count, member in enumerate(_tar_members(archive), start=1):
                if count > max_members:
                    raise ResultsArchiveError(f"the results archive holds more than "
                                              f"{max_members} entries")
                if member.isdir():
                    continue
                if member.issym() or member.islnk():
                    raise ResultsArchiveError(f"the results archive holds a link "
                                              f"{member.name!r}; only files can be delivered")
                if not member.isreg():
                    raise ResultsArchiveError(f"the results archive holds {member.name!r}, "
                                              "which is not a regular file")
                extracted = archive.extractfile(member)
                if extracted is None:  # pragma: no cover - isreg() members always have data
                    continue
                collector.add(_safe_path(member.name), member.size, extracted)
    except ResultsArchiveError:
        raise
    except (tarfile.TarError, zlib.error, EOFError, OSError) as error:
        raise ResultsArchiveError(f"the results tarball is damaged: {error}") from error
    return _strip_results_folder(collector.finish())


def _strip_results_folder(files: dict[str, bytes]) -> dict[str, bytes]:
    """Drop a leading ``results/`` when every file sits under it.

    A tarball of the whole output folder puts the results there, while a zip
    has them at its root; stripping makes both give the same paths.
    """
    prefix = TARBALL_RESULTS_FOLDER + "/"
    if files and all(path.startswith(prefix) for path in files):
        return {path[len(prefix):]: data for path, data in files.items()}
    return files
