"""Dumb HTTP: a bare repository served as static files (after ``git update-server-info``).

Any web server, mirror or object store can serve one. There is no negotiation and no
filter: ``info/refs`` lists the refs, and each object comes either loose
(``objects/xx/…``, one request each) or inside a pack listed in
``objects/info/packs``, which comes whole (with its ``.idx``). dulwich's dumb client
(:class:`dulwich.dumb.DumbHTTPObjectStore`) finds the objects; the bytes move through
the node's own transport (:meth:`bootpull.fetch.GitRemote.get_file`), so the pull's
deadline, byte cap and retries apply to every request. Each object is checked against
the id it was asked by before it enters the node's cache.
"""

from __future__ import annotations

import io
import re
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bootpull.errors import VerifyError
from bootpull.gitwire import RemoteRef

if TYPE_CHECKING:
    from dulwich.objects import ShaFile

_LINE = re.compile(rb"([0-9a-f]{40})\t([\x21-\x7e]+)")


def parse_info_refs(data: bytes) -> dict[str, RemoteRef] | None:
    """The refs of a dumb ``info/refs`` (``oid<TAB>name`` lines, tags peeled on
    ``name^{}`` lines); None if ``data`` is not such a file."""
    refs: dict[str, RemoteRef] = {}
    lines = data.splitlines()
    if not lines:
        return None
    for line in lines:
        match = _LINE.fullmatch(line)
        if match is None:
            return None
        oid, name = match.group(1).decode(), match.group(2).decode()
        if name.endswith("^{}"):
            base = name[:-3]
            if base in refs:
                refs[base] = RemoteRef(base, refs[base].oid, oid)
        else:
            refs[name] = RemoteRef(name, oid)
    return refs


class _Answer:
    def __init__(self, status: int) -> None:
        self.status = status

    def close(self) -> None:
        pass


class DumbObjects:
    """Objects of a dumb HTTP repository by id; ``get_file(path)`` is the transport
    (the bytes at ``path`` under the repository URL, or None for a 404)."""

    def __init__(self, base_url: str, get_file: Callable[[str], bytes | None]) -> None:
        from dulwich.dumb import DumbHTTPObjectStore

        self._base = base_url.rstrip("/") + "/"
        self._get_file = get_file
        self._store = DumbHTTPObjectStore(self._base, self._request)

    def _request(self, url: str, headers: dict[str, str]) -> tuple[Any, Callable[..., bytes]]:
        del headers
        if not url.startswith(self._base):  # dulwich joins names onto the base URL
            raise OSError(f"{url} is outside the repository {self._base}")
        data = self._get_file(url[len(self._base):])
        return _Answer(404 if data is None else 200), io.BytesIO(data or b"").read

    def get(self, oid: str) -> ShaFile | None:
        """The object ``oid`` (checked against its id), or None if the server lacks it."""
        from dulwich.errors import FileFormatException
        from dulwich.objects import ObjectID, ShaFile

        try:
            type_num, content = self._store.get_raw(ObjectID(oid.encode()))
        except KeyError:
            return None
        except (FileFormatException, zlib.error, ValueError, OSError, LookupError) as exc:
            raise VerifyError(f"object {oid[:12]} from the dumb HTTP server is malformed",
                              why=f"{type(exc).__name__}: {exc}",
                              hint="the repository server is broken or hostile; nothing "
                                   "was installed") from None
        obj = ShaFile.from_raw_string(type_num, content)
        if obj.id.decode() != oid:
            raise VerifyError(f"the dumb HTTP server sent another object for {oid[:12]}",
                              expected=oid, got=obj.id.decode(),
                              hint="the repository server is broken or hostile; nothing "
                                   "was installed")
        return obj

    def close(self) -> None:
        self._store.close()
