"""A cheap structural check of a received git pack, before dulwich indexes it.

dulwich (≥ 1.2.9) already refuses self-referencing deltas and stops inflating an entry
at the size its header declares. But a header may *declare* any size: a 1 KB pack can
claim a 100 GB object, or a delta whose result is 100 GB, and indexing it would try to
build that in memory. This scan walks every entry the way ``git index-pack`` does,
inflating into a bounded window that is thrown away, and refuses a pack that:

- is not a version 2 or 3 pack, or ends before its declared number of entries;
- has an entry type that does not exist, or a delta base offset of zero or one that
  points before the start of the pack;
- inflates (or, for deltas, declares a result) larger than ``max_inflated``, per
  entry or in total;
- holds a whole object larger than ``max_object``, or a delta larger than
  ``max_delta`` or whose base or result is: dulwich builds each object whole in memory while it
  indexes the pack (a delta with its base), so these bound the node's memory
  (:class:`ObjectTooLarge`);
- inflates to a size other than the one its header declares;
- has anything but the checksum after its last entry.

It does not check the checksum or object ids: dulwich's indexer does that next.
"""

from __future__ import annotations

import mmap
import struct
import zlib
from typing import BinaryIO

_OUT = 256 * 1024  # inflate window: memory use stays at this, whatever the pack says
_IN = 64 * 1024
_TYPES = {1: "commit", 2: "tree", 3: "blob", 4: "tag", 6: "ofs-delta", 7: "ref-delta"}


class PackProblem(ValueError):
    """The pack is malformed or hostile; the message says which entry and how."""


class ObjectTooLarge(PackProblem):
    """An object in the pack is larger than the node agrees to hold in memory."""


def _varint_le(data: bytes, pos: int) -> tuple[int, int]:
    """A delta header size: 7 bits a byte, least significant first."""
    value = shift = 0
    while True:
        if pos >= len(data):
            raise PackProblem("a delta header ends early")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos
        if shift > 63:
            raise PackProblem("a delta header size is too long")


def scan_pack(file: BinaryIO, *, max_inflated: int, max_object: int | None = None,
              max_delta: int | None = None, hash_len: int | None = None) -> int:
    """Check the pack in ``file``; return its number of entries or raise PackProblem.

    ``max_object`` caps each whole object, ``max_delta`` a delta's base and result
    (both default to ``max_inflated``)."""
    file.seek(0, 2)
    size = file.tell()
    if size < 12 + 20:
        raise PackProblem(f"a pack of {size} bytes is too short to be a pack")
    caps = (max_inflated, max_inflated if max_object is None else max_object,
            max_inflated if max_delta is None else max_delta)
    with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return _scan(data, size, caps, hash_len)


def _scan(data: mmap.mmap, size: int, caps: tuple[int, int, int],
          hash_len: int | None) -> int:
    max_inflated, max_object, max_delta = caps
    magic, version, count = struct.unpack(">4sLL", data[:12])
    count = int(count)
    if magic != b"PACK":
        raise PackProblem("the data does not start with a pack header")
    if version not in (2, 3):
        raise PackProblem(f"pack version {version} is not 2 or 3")
    ref_len = hash_len or 20
    pos = 12
    total = 0
    for index in range(count):
        start = pos
        if pos >= size:
            raise PackProblem(f"the pack ends at entry {index} of {count}")
        byte = data[pos]
        pos += 1
        kind = (byte >> 4) & 7
        declared = byte & 0x0F
        shift = 4
        while byte & 0x80:
            if pos >= size or shift > 63:
                raise PackProblem(f"entry {index}: the size field is malformed")
            byte = data[pos]
            pos += 1
            declared |= (byte & 0x7F) << shift
            shift += 7
        if kind not in _TYPES:
            raise PackProblem(f"entry {index}: object type {kind} does not exist")
        if declared > max_inflated:
            raise PackProblem(f"entry {index} declares {declared} bytes, over the cap of "
                              f"{max_inflated}")
        if kind not in (6, 7) and declared > max_object:
            raise ObjectTooLarge(f"entry {index} is a {_TYPES[kind]} of {declared} bytes, "
                                 f"over the cap of {max_object} on one object")
        if kind in (6, 7) and declared > max_delta:  # its instructions, held whole too
            raise ObjectTooLarge(f"entry {index} is a delta of {declared} bytes, over the "
                                 f"cap of {max_delta} on one")
        if kind == 6:
            if pos >= size:
                raise PackProblem(f"entry {index}: the delta offset is cut off")
            byte = data[pos]
            pos += 1
            offset = byte & 0x7F
            while byte & 0x80:
                if pos >= size or offset > size:
                    raise PackProblem(f"entry {index}: the delta offset is malformed")
                byte = data[pos]
                pos += 1
                offset = ((offset + 1) << 7) | (byte & 0x7F)
            if offset == 0 or offset > start - 12:
                raise PackProblem(f"entry {index}: delta base offset {offset} points "
                                  "outside the pack or at the entry itself")
        elif kind == 7:
            pos += ref_len
        pos, head, inflated = _inflate(data, pos, size, declared, index)
        if inflated != declared:
            raise PackProblem(f"entry {index} inflates to {inflated} bytes, but its header "
                              f"says {declared}")
        if kind in (6, 7):
            source, at = _varint_le(head, 0)
            result, _ = _varint_le(head, at)
            if result > max_inflated:
                raise PackProblem(f"entry {index} is a delta to a {result}-byte object, over "
                                  f"the cap of {max_inflated}")
            if max(source, result) > max_delta:
                raise ObjectTooLarge(f"entry {index} is a delta from a {source}-byte object "
                                     f"to a {result}-byte one, over the cap of {max_delta} "
                                     "on either")
            total += result
        else:
            total += declared
        if total > max_inflated:
            raise PackProblem(f"the pack inflates to more than the cap of {max_inflated} bytes")
    trailer = size - pos
    if trailer not in (20, 32) or (hash_len is not None and trailer != hash_len):
        raise PackProblem(f"{trailer} bytes follow the last entry; expected only the checksum")
    return count


def _inflate(data: mmap.mmap, pos: int, size: int, declared: int,
             index: int) -> tuple[int, bytes, int]:
    """Inflate one zlib stream at ``pos`` into a throwaway window.

    Returns (position after the stream, the first bytes of output, inflated length).
    """
    inflater = zlib.decompressobj()
    head = b""
    inflated = 0
    while not inflater.eof:
        if pos >= size:
            raise PackProblem(f"entry {index}: the pack ends inside its compressed data")
        chunk = data[pos:pos + _IN]
        pos += len(chunk)
        pending = chunk
        while True:
            try:
                out = inflater.decompress(pending, _OUT)
            except zlib.error as exc:
                raise PackProblem(f"entry {index}: bad compressed data ({exc})") from None
            inflated += len(out)
            if len(head) < 32:
                head += out[:32 - len(head)]
            if inflated > declared:
                raise PackProblem(f"entry {index} inflates past the {declared} bytes its "
                                  "header declares")
            pending = inflater.unconsumed_tail
            if inflater.eof or not pending:
                break
    pos -= len(inflater.unused_data)
    return pos, head, inflated
