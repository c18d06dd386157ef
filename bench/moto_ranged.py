"""moto's S3 server, answering a ranged GET by seeking instead of copying the object.

moto 5 builds every GET's body from the whole object (`FakeKey.value` reads it all)
and slices the range out after: a 4 KiB read of a 2 GB object costs a 2 GB copy, which
no S3 does. For the object-storage benchmark, a GET that carries a Range header gets a
view that reads only the bytes asked for; everything else (auth, listing, ETag, the
Range and Content-Range handling itself) is moto's own. Tests use plain moto.

With MOTO_GET_LATENCY_MS set, each GET waits that long before answering (in its own
server thread), to model the first-byte latency of a real S3 over a network.

    python bench/moto_ranged.py -H 127.0.0.1 -p 5000
"""

import contextvars
import os
import sys
import time
from typing import Any

from moto.s3.models import FakeKey
from moto.s3.responses import S3Response
from moto.server import main

_ranged: contextvars.ContextVar[bool] = contextvars.ContextVar("ranged", default=False)
_whole_value = FakeKey.value


class _RangeView:
    """What `_handle_range_header` needs of a body: a length and slicing."""

    def __init__(self, key: FakeKey) -> None:
        self._key = key

    def __len__(self) -> int:
        return int(self._key.size)

    def __getitem__(self, part: slice) -> bytes:
        start = part.start or 0
        stop = len(self) if part.stop is None else min(part.stop, len(self))
        with self._key.lock:
            self._key._value_buffer.seek(start)
            return bytes(self._key._value_buffer.read(max(0, stop - start)))


def _value(self: FakeKey) -> Any:
    if _ranged.get():
        return _RangeView(self)
    return _whole_value.fget(self)  # type: ignore[attr-defined]


_get_object = S3Response.get_object


_LATENCY_S = float(os.environ.get("MOTO_GET_LATENCY_MS", "0")) / 1000


def _ranged_get_object(self: S3Response) -> Any:
    if _LATENCY_S:
        time.sleep(_LATENCY_S)
    if not self.headers.get("range"):
        return _get_object(self)
    token = _ranged.set(True)
    try:
        return _get_object(self)
    finally:
        _ranged.reset(token)


FakeKey.value = property(_value, _whole_value.fset)  # type: ignore[assignment,method-assign]
S3Response.get_object = _ranged_get_object  # type: ignore[method-assign]

if __name__ == "__main__":
    main(sys.argv[1:])
