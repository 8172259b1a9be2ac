"""Bounds on downloading a results archive from the FN: its size, and the time it takes.

The FN builds the archive from whatever the analysis wrote and may take a
minute to answer; the FN client reads a whole answer at once, with a timeout
per read rather than for the whole. So the bounds sit in the client's
transport, where the archive's bytes are counted as they arrive: the download
stops as soon as it passes the size cap (a :class:`ResultsArchiveError`, as
such an archive can never be delivered) or its deadline (a read timeout, which
the FN client reports as the FN being slow, so the delivery is tried later).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import httpx

from taskcore.results import ResultsArchiveError

#: The largest results archive downloaded. The archive reader refuses more than
#: 100 MiB unpacked; a zip that stores its files uncompressed adds headers on top.
RESULTS_MAX_BYTES = 110 * 2**20

_RESULTS_PATH = re.compile(r"^/tasks/[0-9]+/results$")


def too_large(max_bytes: int) -> ResultsArchiveError:
    size = f"{max_bytes // 2**20} MiB" if max_bytes >= 2**20 else f"{max_bytes} bytes"
    return ResultsArchiveError(f"the results archive is larger than {size}, the most FNTC "
                               "delivers; have the analysis write smaller results")


class _BoundedStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, request: httpx.Request, *,
                 max_bytes: int, deadline: float, clock: Callable[[], float]) -> None:
        self.inner = inner
        self.request = request
        self.max_bytes = max_bytes
        self.deadline = deadline
        self.clock = clock

    def __iter__(self) -> Iterator[bytes]:
        received = 0
        for chunk in self.inner:
            received += len(chunk)
            if received > self.max_bytes:
                raise too_large(self.max_bytes)
            if self.clock() > self.deadline:
                raise httpx.ReadTimeout("the results took too long to download",
                                        request=self.request)
            yield chunk

    def close(self) -> None:
        self.inner.close()


class BoundedResults(httpx.BaseTransport):
    """Passes every request to ``inner``; answers of ``GET /tasks/{id}/results`` are cut
    off past ``max_bytes`` or ``seconds`` after the request was sent."""

    def __init__(self, inner: httpx.BaseTransport, *, max_bytes: int = RESULTS_MAX_BYTES,
                 seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.max_bytes = max_bytes
        self.seconds = seconds
        self.clock = clock

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = self.clock() + self.seconds
        response = self.inner.handle_request(request)
        if request.method != "GET" or not _RESULTS_PATH.match(request.url.path):
            return response
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response.close()
            raise too_large(self.max_bytes)
        stream = response.stream
        if not isinstance(stream, httpx.SyncByteStream):  # pragma: no cover - sync clients
            return response
        return httpx.Response(
            response.status_code, headers=response.headers, request=request,
            extensions=response.extensions,
            stream=_BoundedStream(stream, request, max_bytes=self.max_bytes,
                                  deadline=deadline, clock=self.clock))

    def close(self) -> None:
        self.inner.close()
