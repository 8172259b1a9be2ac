"""Reading results archives: both formats, and every way an archive can be hostile."""

from __future__ import annotations

import gzip
import io
import tarfile
import time
import warnings
import zipfile

import httpx
import pytest

from poller.download import BoundedResults
from taskcore.fn import FNClient, FNUnavailable
from taskcore.results import ResultsArchiveError, read_results_archive

RESULTS = {"summary.csv": b"cohort,n\na,12\n", "plots/survival.txt": b"median 14.2\n"}


def make_zip(files: dict[str, bytes], *, folders: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for folder in folders:
            archive.writestr(zipfile.ZipInfo(folder.rstrip("/") + "/"), b"")
        for path, data in files.items():
            archive.writestr(path, data)
    return buffer.getvalue()


def zip_with_entry(info: zipfile.ZipInfo, data: bytes = b"target") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(info, data)
    return buffer.getvalue()


def make_tarball(members: list[tuple[tarfile.TarInfo, bytes | None]], *,
                 compress: bool = True, pax: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    mode = "w:gz" if compress else "w"
    with tarfile.open(fileobj=buffer, mode=mode, format=tarfile.PAX_FORMAT,
                      pax_headers=pax or {}) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def file_member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def special_member(name: str, kind: bytes, target: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def output_folder_tarball(files: dict[str, bytes], prefix: str = "results/") -> bytes:
    members = [special_member(prefix.rstrip("/"), tarfile.DIRTYPE)]
    members += [file_member(prefix + path, data) for path, data in files.items()]
    return make_tarball(members)


# -- the two formats -------------------------------------------------------------------

def test_zip_gives_files_by_path_and_skips_folders() -> None:
    data = make_zip(RESULTS, folders=("plots", "empty"))
    assert read_results_archive(data) == RESULTS


def test_tarball_of_the_output_folder_gives_the_same_mapping_as_the_zip() -> None:
    assert read_results_archive(output_folder_tarball(RESULTS)) == RESULTS
    assert read_results_archive(output_folder_tarball(RESULTS, "./results/")) == RESULTS


def test_tarball_with_files_outside_results_keeps_its_paths() -> None:
    members = [file_member("results/a.txt", b"a"), file_member("logs/run.log", b"log")]
    assert read_results_archive(make_tarball(members)) == {
        "results/a.txt": b"a", "logs/run.log": b"log"}


def test_results_folder_inside_a_zip_is_kept() -> None:
    # A zip has the results at its root; a "results" folder in it is the researcher's own.
    data = make_zip({"results/a.txt": b"a"})
    assert read_results_archive(data) == {"results/a.txt": b"a"}


def test_format_is_told_by_content_alone() -> None:
    assert read_results_archive(make_tarball([file_member("a.txt", b"a")],
                                             compress=False)) == {"a.txt": b"a"}
    with pytest.raises(ResultsArchiveError, match="neither a zip nor a gzip tarball"):
        read_results_archive(b"results.zip results.tar.gz")


@pytest.mark.parametrize("data", [
    pytest.param(make_zip({}), id="empty-zip"),
    pytest.param(make_tarball([]), id="empty-tarball"),
    pytest.param(output_folder_tarball({}), id="tarball-with-only-the-folder"),
])
def test_empty_archive_gives_no_files(data: bytes) -> None:
    assert read_results_archive(data) == {}


# -- hostile or broken archives --------------------------------------------------------

@pytest.mark.parametrize("name", [
    "../evil.sh", "a/../../evil.sh", "/etc/passwd", "C:/Windows/evil.dll", "..\\evil.sh",
    ".git/hooks/post-checkout",
])
def test_paths_escaping_the_root_refuse_the_zip(name: str) -> None:
    with pytest.raises(ResultsArchiveError):
        read_results_archive(zip_with_entry(zipfile.ZipInfo(name)))


@pytest.mark.parametrize("name", ["../evil.sh", "/etc/passwd", "results/../../evil.sh"])
def test_paths_escaping_the_root_refuse_the_tarball(name: str) -> None:
    with pytest.raises(ResultsArchiveError):
        read_results_archive(make_tarball([file_member(name, b"x")]))


def test_symlink_in_a_zip_is_refused() -> None:
    info = zipfile.ZipInfo("passwd")
    info.external_attr = 0o120777 << 16
    with pytest.raises(ResultsArchiveError, match="symbolic link"):
        read_results_archive(zip_with_entry(info, b"/etc/passwd"))


@pytest.mark.parametrize("member", [
    pytest.param(special_member("results/passwd", tarfile.SYMTYPE, "/etc/passwd"),
                 id="symlink"),
    pytest.param(special_member("results/hard", tarfile.LNKTYPE, "results/a.txt"),
                 id="hardlink"),
    pytest.param(special_member("results/dev", tarfile.CHRTYPE), id="device"),
    pytest.param(special_member("results/pipe", tarfile.FIFOTYPE), id="fifo"),
])
def test_links_and_devices_refuse_the_tarball(member) -> None:
    data = make_tarball([file_member("results/a.txt", b"a"), member])
    with pytest.raises(ResultsArchiveError):
        read_results_archive(data)


def test_more_files_than_allowed_is_refused() -> None:
    files = {f"f{i}.txt": b"x" for i in range(4)}
    assert len(read_results_archive(make_zip(files), max_files=4)) == 4
    with pytest.raises(ResultsArchiveError, match="more than 3 files"):
        read_results_archive(make_zip(files), max_files=3)
    with pytest.raises(ResultsArchiveError, match="more than 3 files"):
        read_results_archive(output_folder_tarball(files), max_files=3)


def test_zip_bomb_is_stopped_while_reading() -> None:
    bomb = make_zip({"zeros.bin": bytes(20 * 2**20)})
    assert len(bomb) < 100_000
    started = time.monotonic()
    with pytest.raises(ResultsArchiveError, match="more than 1048576 bytes"):
        read_results_archive(bomb, max_bytes=2**20)
    assert time.monotonic() - started < 2


def test_zip_whose_header_understates_the_size_is_refused() -> None:
    data = bytearray(make_zip({"a.bin": bytes(64 * 1024)}))
    # Patch the central directory's uncompressed size (offset 24 in the entry) to 1.
    central = data.rfind(b"PK\x01\x02")
    data[central + 24:central + 28] = (1).to_bytes(4, "little")
    with pytest.raises(ResultsArchiveError):
        read_results_archive(bytes(data), max_bytes=1024)


def test_gzip_tarball_bomb_is_stopped_while_reading() -> None:
    bomb = output_folder_tarball({"zeros.bin": bytes(20 * 2**20)})
    with pytest.raises(ResultsArchiveError, match="more than 1048576 bytes"):
        read_results_archive(bomb, max_bytes=2**20)


def test_oversized_tar_metadata_is_stopped_too() -> None:
    # A pax header is unpacked by tarfile itself, before any file is read.
    bomb = make_tarball([file_member("a.txt", b"a")], pax={"comment": "x" * (8 * 2**20)})
    with pytest.raises(ResultsArchiveError):
        read_results_archive(bomb, max_files=1, max_bytes=1024)


def test_limits_count_all_files_together() -> None:
    files = {f"f{i}.bin": bytes(400) for i in range(3)}
    assert len(read_results_archive(make_zip(files), max_bytes=1200)) == 3
    with pytest.raises(ResultsArchiveError):
        read_results_archive(make_zip(files), max_bytes=1199)


def test_same_path_twice_or_as_file_and_folder_is_refused() -> None:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate, as it should
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("a.txt", b"1")
            archive.writestr("a.txt", b"2")
    with pytest.raises(ResultsArchiveError, match="twice"):
        read_results_archive(buffer.getvalue())
    with pytest.raises(ResultsArchiveError, match="both as a file and as a folder"):
        read_results_archive(make_zip({"a": b"1", "a/b.txt": b"2"}))


@pytest.mark.parametrize("data", [
    pytest.param(b"", id="zero-bytes"),
    pytest.param(b"\x00" * 1000, id="zeros"),
    pytest.param(make_zip(RESULTS)[:-30], id="truncated-zip"),
    pytest.param(output_folder_tarball(RESULTS)[:-40], id="truncated-gzip"),
    pytest.param(gzip.compress(b"not a tarball at all " * 100), id="gzip-of-text"),
    pytest.param(b"\x1f\x8bthis is no gzip stream", id="bad-gzip"),
    pytest.param(b"PK\x03\x04" + b"\xff" * 100, id="zip-magic-then-garbage"),
])
def test_garbage_is_refused_with_one_sentence(data: bytes) -> None:
    with pytest.raises(ResultsArchiveError) as caught:
        read_results_archive(data)
    assert "\n" not in str(caught.value) and str(caught.value)


# -- downloading the archive from the FN -------------------------------------------------


class Chunks(httpx.SyncByteStream):
    """An answer body that arrives ``count`` chunks of ``size`` bytes at a time, as a
    large or slow archive does; ``tick`` runs before each chunk."""

    def __init__(self, count: int, size: int, tick=lambda: None) -> None:
        self.count, self.size, self.tick = count, size, tick
        self.sent = 0

    def __iter__(self):
        for _ in range(self.count):
            self.tick()
            self.sent += 1
            yield b"x" * self.size


def fn_answering(stream: httpx.SyncByteStream, *, headers: dict[str, str] | None = None,
                 max_bytes: int = 1000, seconds: float = 60.0,
                 clock=time.monotonic) -> FNClient:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=headers or {}, stream=stream)
    transport = BoundedResults(httpx.MockTransport(answer), max_bytes=max_bytes,
                               seconds=seconds, clock=clock)
    return FNClient("http://fn.test", transport=transport)


def test_a_results_download_stops_at_the_size_cap():
    body = Chunks(count=1000, size=100)
    with pytest.raises(ResultsArchiveError, match="larger than"):
        fn_answering(body).results("token", 7)
    assert body.sent == 11, "the download stopped right after the cap, not at the end"


def test_a_declared_size_over_the_cap_is_refused_before_reading():
    body = Chunks(count=1, size=10)
    with pytest.raises(ResultsArchiveError, match="larger than"):
        fn_answering(body, headers={"content-length": "5000"}).results("token", 7)
    assert body.sent == 0


def test_a_results_download_past_its_deadline_is_tried_again_later():
    now = [0.0]
    body = Chunks(count=50, size=10, tick=lambda: now.__setitem__(0, now[0] + 1.0))
    with pytest.raises(FNUnavailable, match="in time") as caught:
        fn_answering(body, seconds=5.0, clock=lambda: now[0]).results("token", 7)
    assert caught.value.transient
    assert body.sent == 6


def test_answers_other_than_results_are_not_bounded():
    body = Chunks(count=30, size=100)
    fn = fn_answering(body, headers={"content-type": "application/json"})
    with pytest.raises(FNUnavailable, match="cannot read"):
        fn.get("token", 7)      # 3000 bytes of "x", over the cap, read to the end
    assert body.sent == 30


def test_an_archive_within_the_bounds_arrives_whole():
    archive = make_zip(RESULTS)
    fn = fn_answering(httpx.ByteStream(archive), max_bytes=len(archive))
    assert read_results_archive(fn.results("token", 7)) == RESULTS
