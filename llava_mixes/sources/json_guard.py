"""Limits on a JSON annotation stream, checked on its bytes before a parser builds any object.

ijson builds every value it is handed, and keeps a prefix string per nesting level, so one record nested
200,000 levels deep takes tens of GB. `GuardedArray` stands between the file and ijson: it scans each
chunk for the JSON structure (strings, escapes, brackets; vectorised with numpy) and hands ijson the
array's records only once each is complete. A record nested deeper than `MAX_DEPTH` or larger than
`MAX_RECORD_BYTES` is never handed over: ijson gets `null` in its place and the record is listed in
`rejected` with the limit it broke, so the reader rejects that one row and goes on with the next.

Before a record is dropped, its bytes up to the limit are checked to be valid JSON (the limit may cut a
character, an escape, a literal or a number short: that is no error); if they are not, the scan may have been
misled by a syntax error, so the stream is handed over unchanged from there and the parser reports the error at
its place.

yajl turns a lone surrogate escape (`"\\ud800"`) into `?`. A record whose bytes hold one is parsed again
with Python's `json`, which keeps the surrogate, so that the row check can reject it by name.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import IO

import ijson
import numpy as np

MAX_DEPTH = 64
"""Deepest nesting a record may have (the array holding the records is level 1); real records nest ~4 deep."""
MAX_RECORD_BYTES = 64 << 20
"""Largest record, in bytes of JSON text."""

_CHUNK_BYTES = 1 << 20
_ESCAPE_SPAN = 12
_QUOTE, _OPEN, _CLOSE, _COMMA = 1, 2, 3, 4
_KINDS = np.zeros(256, dtype=np.int8)
_KINDS[ord('"')] = _QUOTE
_KINDS[[ord("["), ord("{")]] = _OPEN
_KINDS[[ord("]"), ord("}")]] = _CLOSE
_KINDS[ord(",")] = _COMMA
_KIND_TABLE = _KINDS.tobytes()
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
# The tokens a text cut at any byte can end in without being wrong: part of an escape, a literal or a number.
_CUT_TOKEN = re.compile(
    rb"(?:\\u[0-9a-fA-F]{0,3}|\\|t|tr|tru|f|fa|fal|fals|n|nu|nul|-|-?[0-9]+\.|-?[0-9]+(?:\.[0-9]+)?[eE][-+]?)\Z"
)
_LOW_SURROGATE = 0xDC00
_BACKSLASH = 0x5C


def _backslashes_before(data: bytes, position: int) -> int:
    """How many backslashes immediately precede `position` in `data`."""
    count = 0
    while position - count > 0 and data[position - count - 1] == _BACKSLASH:
        count += 1
    return count


class StructureScanner:
    """Tracks the nesting depth and the in-string state of a JSON text fed in chunks.

    A chunk must not end inside an escape sequence (`GuardedArray` makes sure of that), so that a backslash
    run never spans two chunks.
    """

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False

    def scan(self, data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The positions and kinds (`_OPEN`, `_CLOSE`, `_COMMA`) of the structural bytes of `data` outside
        strings, and the depth after each."""
        codes = np.frombuffer(data, dtype=np.uint8)
        every_kind = np.frombuffer(data.translate(_KIND_TABLE), dtype=np.int8)
        positions = np.flatnonzero(every_kind.view(np.bool_))
        kinds = every_kind[positions]
        quotes = kinds == _QUOTE
        toggles = quotes.copy()
        quote_positions = positions[quotes]
        after_backslash = quote_positions[(quote_positions > 0) & (codes[quote_positions - 1] == _BACKSLASH)]
        escaped = [at for at in after_backslash.tolist() if _backslashes_before(data, at) % 2]
        if escaped:
            toggles[np.searchsorted(positions, escaped)] = False
        quotes_so_far = np.cumsum(toggles, dtype=np.int64) + int(self.in_string)
        outside = ~quotes & ((quotes_so_far & 1) == 0)
        structural, structural_kinds = positions[outside], kinds[outside]
        steps = (structural_kinds == _OPEN).astype(np.int64) - (structural_kinds == _CLOSE)
        depths = self.depth + np.cumsum(steps)
        if quotes_so_far.size:
            self.in_string = bool(quotes_so_far[-1] % 2)
        if depths.size:
            self.depth = int(depths[-1])
        return structural, structural_kinds, depths


def max_depth(data: bytes) -> int:
    """The deepest nesting of the JSON text `data` (0 for a scalar)."""
    _, _, depths = StructureScanner().scan(data)
    return int(depths.max()) if depths.size else 0


def lone_surrogates(data: bytes) -> list[int]:
    """Positions of `\\uD800`-`\\uDFFF` escapes in `data` that are not half of a surrogate pair."""
    found = {
        match.start(): int(match.group()[2:], 16)
        for match in _SURROGATE.finditer(data)
        if _backslashes_before(data, match.start()) % 2 == 0
    }
    lone = []
    for position, value in found.items():
        if value < _LOW_SURROGATE:
            paired = found.get(position + 6, 0) >= _LOW_SURROGATE
        else:
            paired = found.get(position - 6, _LOW_SURROGATE) < _LOW_SURROGATE
        if not paired:
            lone.append(position)
    return lone


def patch_lone_surrogates(data: bytes) -> bytes:
    """`data` with each lone surrogate escape replaced by `\\ufffd` (same length), which yajl reads as it
    should; a lone low surrogate would otherwise reach Python as bytes that are not UTF-8."""
    positions = lone_surrogates(data) if b"\\u" in data else []
    if not positions:
        return data
    patched = bytearray(data)
    for position in positions:
        patched[position : position + 6] = b"\\ufffd"
    return bytes(patched)


def _without_cut_token(data: bytes) -> bytes:
    """`data` less what its end cuts short: a UTF-8 character, then an escape, a literal or a number."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            break
        if byte >= 0xC0:  # the lead byte of the last character: cut short if it wants more bytes than follow
            wanted = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            data = data[:-back] if wanted > back else data
            break
    cut = _CUT_TOKEN.search(data)
    return data[: cut.start()] if cut else data


def valid_prefix(data: bytes) -> bool:
    """Whether `data` is the start of a valid JSON text: yajl finds nothing wrong before its end, where a
    character, an escape, a literal or a number may be cut short (a size limit falls anywhere)."""
    return _parses_to_its_end(data) or _parses_to_its_end(_without_cut_token(data))


def _parses_to_its_end(data: bytes) -> bool:
    try:
        for _ in ijson.basic_parse(io.BytesIO(data)):
            pass
    except ijson.IncompleteJSONError as error:
        return "premature EOF" in str(error)
    except ijson.JSONError:
        return False
    return True


class GuardedArray:
    """A binary file-like over a JSON array file that enforces the limits (see the module docstring).

    `rejected[i]`: why record `i` was dropped. `reparse[i]`: the bytes of record `i`, which holds a lone
    surrogate escape. Offsets: `offset` counts the file's bytes read; `file_offset` maps a position in the
    stream handed out back to the file.
    """

    def __init__(
        self,
        handle: IO[bytes],
        start: int,
        on_bytes: Callable[[int], None] | None = None,
        depth_limit: int | None = None,
        size_limit: int | None = None,
    ) -> None:
        self._handle = handle
        self._on_bytes = on_bytes
        self.depth_limit = MAX_DEPTH if depth_limit is None else depth_limit
        self.size_limit = MAX_RECORD_BYTES if size_limit is None else size_limit
        self._scanner = StructureScanner()
        self.offset = start
        self.handed = 0
        self.last_piece = b""
        self._previous_piece = b""
        self._pending = b""
        self._position = 0
        self._out = bytearray()
        self._out_total = 0
        self._shifts: list[tuple[int, int]] = [(0, start)]
        self._held: list[bytes] = []
        self._held_size = 0
        self._held_start = start
        self._held_lone = False
        self._item = 0
        self._skipping = False
        self._passthrough = False
        self._eof = False
        self.rejected: dict[int, str] = {}
        self.reparse: dict[int, bytes] = {}

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes of the guarded stream; empty at its end."""
        if self._position >= len(self._pending):
            while not self._out and not self._eof:
                self._fill()
            self._pending, self._position = bytes(self._out), 0
            self._out.clear()
        end = len(self._pending) if size < 0 else self._position + size
        piece = self._pending[self._position : end]
        self._position += len(piece)
        self.handed += len(piece)
        self._previous_piece, self.last_piece = self.last_piece, piece
        return piece

    @property
    def window(self) -> bytes:
        """The last two pieces handed out (the one yajl failed in, and the one before)."""
        return self._previous_piece + self.last_piece

    def file_offset(self, position: int) -> int:
        """The file offset of byte `position` of the stream handed out."""
        out_at, file_at = max((shift for shift in self._shifts if shift[0] <= position), key=lambda shift: shift[0])
        return file_at + position - out_at

    def _read_chunk(self) -> bytes:
        """The next chunk of the file, extended so that it never ends within an escape sequence or pair."""
        chunk = bytearray(self._handle.read(_CHUNK_BYTES))
        while chunk and b"\\" in chunk[-_ESCAPE_SPAN:]:
            more = self._handle.read(64)
            if not more:
                break
            chunk += more
        if self._on_bytes is not None and chunk:
            self._on_bytes(len(chunk))
        return bytes(chunk)

    def _emit(self, data: bytes) -> None:
        self._out += data
        self._out_total += len(data)

    def _hold(self, data: bytes) -> None:
        self._held.append(data)
        self._held_size += len(data)

    def _take_held(self) -> bytes:
        held = b"".join(self._held)
        self._held, self._held_size, self._held_lone = [], 0, False
        return held

    def _fill(self) -> None:
        chunk = self._read_chunk()
        chunk_start = self.offset
        self.offset += len(chunk)
        if not chunk:
            self._eof = True
            if self._skipping:
                self._emit(b"null")
            else:
                self._emit(patch_lone_surrogates(self._take_held()))
            return
        if self._passthrough:
            self._emit(patch_lone_surrogates(chunk))
            return
        positions, kinds, depths = self._scanner.scan(chunk)
        cuts = positions[
            ((kinds == _COMMA) & (depths == 1))
            | ((kinds == _OPEN) & (depths == 1))
            | ((kinds == _CLOSE) & (depths == 0))
        ]
        deep = positions[(kinds == _OPEN) & (depths > self.depth_limit)]
        lone = lone_surrogates(chunk) if b"\\u" in chunk else []
        if deep.size or lone or self._skipping or self._held_lone or self._held_size + len(chunk) > self.size_limit:
            self._fill_slowly(chunk, chunk_start, cuts, deep, lone)
            return
        if not cuts.size:
            self._hold(chunk)
            return
        last = int(cuts[-1]) + 1
        self._emit(self._take_held() + chunk[:last])
        self._after_cuts(chunk, cuts)
        self._held_start = chunk_start + last
        if self._passthrough:
            self._emit(chunk[last:])
        else:
            self._hold(chunk[last:])

    def _after_cuts(self, chunk: bytes, cuts: np.ndarray) -> None:
        """Count the records the cuts ended; after the array's closing bracket, hand everything through."""
        codes = np.frombuffer(chunk, dtype=np.uint8)[cuts]
        self._item += int(np.count_nonzero(codes == ord(",")))
        if np.any((codes == ord("]")) | (codes == ord("}"))):
            self._passthrough = True

    def _fill_slowly(
        self, chunk: bytes, chunk_start: int, cuts: np.ndarray, deep: np.ndarray, lone: list[int]
    ) -> None:
        """Go through the chunk record by record, dropping the records over a limit."""
        lone_positions = np.asarray(lone, dtype=np.int64)
        begin = 0
        for end in [*(int(at) + 1 for at in cuts), None]:
            stop = len(chunk) if end is None else end
            segment = chunk[begin:stop]
            if not self._skipping:
                problem = self._problem(chunk, chunk_start, begin, stop, deep)
                if problem is not None:
                    limit_at, detail = problem
                    if not valid_prefix(b"".join(self._held) + chunk[begin:limit_at]):
                        self._passthrough = True
                        self._emit(patch_lone_surrogates(self._take_held() + chunk[begin:]))
                        return
                    self._take_held()
                    self.rejected[self._item] = detail
                    self._skipping = True
            self._held_lone = self._held_lone or bool(
                np.searchsorted(lone_positions, begin) < np.searchsorted(lone_positions, stop)
            )
            if end is None:
                if not self._skipping:
                    self._hold(segment)
                break
            if self._skipping:
                self._shifts.append((self._out_total, self._held_start))
                self._emit(b"null")
                self._shifts.append((self._out_total, chunk_start + end - 1))
                self._emit(segment[-1:])
                self._skipping = False
                self._held_lone = False
            else:
                lone_record = self._held_lone
                record = self._take_held() + segment
                if lone_record:
                    self.reparse[self._item] = record[:-1]
                    record = patch_lone_surrogates(record)
                self._emit(record)
            self._held_start = chunk_start + end
            self._after_cuts(chunk, np.asarray([end - 1]))
            if self._passthrough:
                self._emit(patch_lone_surrogates(chunk[end:]))
                return
            begin = end

    def _problem(
        self, chunk: bytes, chunk_start: int, begin: int, stop: int, deep: np.ndarray
    ) -> tuple[int, str] | None:
        """Where the record in `chunk[begin:stop]` (after the held bytes) breaks a limit, and why; None if not."""
        first = int(np.searchsorted(deep, begin))
        if first < deep.size and deep[first] < stop:
            at = int(deep[first])
            return at + 1, (
                f"the record starting at byte {self._held_start} nests deeper than {self.depth_limit} levels "
                f"(level {self.depth_limit + 1} opens at byte {chunk_start + at}); records are read up to "
                f"{self.depth_limit} levels deep"
            )
        if self._held_size + stop - begin > self.size_limit:
            return begin + max(self.size_limit - self._held_size, 0), (
                f"the record starting at byte {self._held_start} is larger than the {self.size_limit:,}-byte "
                "limit on one record"
            )
        return None
