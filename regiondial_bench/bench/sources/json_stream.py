"""Read a huge top-level JSON list one element at a time, its dense fields decoded as they stream.

The released ``*_multi_turn.json`` files are 13 GB and 26 GB: a list of dialogues whose turns hold
``masks``, dense ``H x W`` grids of several MB each. :func:`iter_list_elements` reads the file in
chunks and keeps one dialogue at a time: the JSON outside the dense fields (questions, boxes, ids:
a few hundred bytes per turn) is collected and parsed with ``json.loads``; the value of each dense
field (an array holding no string or object) is cut out as soon as it has been read, handed to a
decoder (dense masks to RLE), and replaced by the decoder's result. Memory is one chunk, one dialogue
and one field, whatever the size of the file.

The scanner only looks at structural bytes (``[]{}"``), found with a compiled regular expression in
the small parts and with ``bytes.find`` across the dense fields, so its cost is a few passes over the
bytes at C speed. It checks what it relies on (bracket balance, string ends, what lies between the
list's elements, what follows it); ``json.loads`` checks the rest of each element and the decoder
checks each field, so an invalid file is refused as a whole, as a plain ``json.loads`` would, with
the byte offset and the element where it fails. This was measured faster than ``ijson``'s C
backend on the released layout (``benchmarks/released_masks.py``), which builds a Python object
for every one of the 300,000 values of a mask.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

CHUNK_BYTES = 8 * 1024 * 1024
MAX_ELEMENT_BYTES = 64 * 1024 * 1024
"""Largest element (a dialogue) without its dense fields; the released dialogues have a few kB."""
MAX_FIELD_BYTES = 64 * 1024 * 1024
"""Largest dense field that is decoded (the released masks fields hold a few MB); a larger one is
skipped without being held in memory and decoded as :class:`OversizedField`."""
MAX_DEPTH = 128
"""Deepest nesting of an element outside its dense fields (a dialogue needs 5 levels)."""

_STRUCTURE = re.compile(rb'[][{}"]')
_WHITESPACE = b" \t\n\r"
_BOM = b"\xef\xbb\xbf"


class JSONStreamError(ValueError):
    """The file is not a valid JSON list; the message names the byte offset (and the element)."""


@dataclass(frozen=True)
class OversizedField:
    """Stands for a dense field larger than :data:`MAX_FIELD_BYTES` (not read into memory)."""

    size: int


@dataclass(frozen=True)
class Element:
    """One element of the list: its index, the byte offset where it starts, and its value."""

    position: int
    offset: int
    value: Any


def iter_list_elements(
    file: BinaryIO,
    *,
    dense_key: str,
    decode: Callable[[bytes], Any],
    on_chunk: Callable[[bytes], None] | None = None,
    chunk_bytes: int | None = None,
) -> Iterator[Element]:
    """Yield the elements of the JSON list in ``file``, one at a time.

    Args:
        file: the file, opened in binary mode at its start.
        dense_key: the object key whose array values are dense fields (``"masks"``).
        decode: turns a dense field's bytes into the value that replaces it in the element
            (raising ``ValueError`` with an ``offset`` attribute for invalid JSON); fields
            larger than :data:`MAX_FIELD_BYTES` are replaced by :class:`OversizedField`.
        on_chunk: called with every chunk read (hashing, progress).
        chunk_bytes: how much is read at a time (default :data:`CHUNK_BYTES`).

    Raises:
        JSONStreamError: the file is not a JSON list, or not valid JSON (at the byte named).
    """
    scanner = _Scanner(file, dense_key.encode(), decode, on_chunk, chunk_bytes or CHUNK_BYTES)
    return scanner.elements()


class _Scanner:
    def __init__(self, file: BinaryIO, key: bytes, decode: Callable[[bytes], Any],
                 on_chunk: Callable[[bytes], None] | None, chunk_bytes: int) -> None:
        self.file, self.decode, self.on_chunk, self.chunk_bytes = file, decode, on_chunk, chunk_bytes
        self.key = b'"' + key + b'"'
        self.buf = b""
        self.base = 0  # file offset of buf[0]
        self.eof = False
        self.position = 0  # index of the next element
        # a random tag for the placeholders of decoded fields: a file cannot spell one in advance
        self.tag = "\0" + secrets.token_hex(8) + ":"
        # the element being read: its text so far (without dense fields), their decoded values
        self.parts: list[bytes] = []
        self.size = 0
        self.copied = 0  # buffer index from which the element's text is not in `parts` yet
        self.decoded: list[Any] = []
        self.not_dense_at = -1  # file offset of an array found not to be dense (read as ordinary JSON)

    # -- reading ----------------------------------------------------------------------------------

    def _more(self, keep_from: int) -> bool:
        """Read the next chunk after ``buf[keep_from:]``; False at the end of the file."""
        chunk = self.file.read(self.chunk_bytes)
        self.base += keep_from
        kept = self.buf[keep_from:] if keep_from < len(self.buf) else b""
        if not chunk:
            self.eof = True
            self.buf = kept
            return False
        if self.on_chunk is not None:
            self.on_chunk(chunk)
        self.buf = kept + chunk if kept else chunk
        return True

    def _flush(self, upto: int) -> None:
        """Move the element's text up to ``buf[upto]`` into ``parts``."""
        if upto > self.copied:
            self.parts.append(self.buf[self.copied : upto])
            self.size += upto - self.copied
            if self.size > MAX_ELEMENT_BYTES:
                raise self._error(f"an element larger than {MAX_ELEMENT_BYTES >> 20} MB (without its dense "
                                  "fields)", self.base + upto)
        self.copied = upto

    def _refill(self, keep_from: int, ends_inside: str) -> None:
        """Read on inside an element, keeping ``buf[keep_from:]`` (its text before is flushed)."""
        self._flush(keep_from)
        if not self._more(keep_from):
            raise self._error(f"the file ends inside {ends_inside}", self.base + len(self.buf))
        self.copied = 0

    def _error(self, message: str, at: int) -> JSONStreamError:
        return JSONStreamError(f"{message} at byte {at} (element {self.position})")

    # -- the list -----------------------------------------------------------------------------------

    def elements(self) -> Iterator[Element]:
        self._more(0)
        pos = self._skip_whitespace(len(_BOM) if self.buf.startswith(_BOM) else 0)
        if pos is None:
            raise JSONStreamError("the file is empty")
        first = self.buf[pos : pos + 1]
        if first != b"[":
            kind = {b"{": "an object", b'"': "a string"}.get(first, "a value")
            raise JSONStreamError(f"expected a JSON list of dialogues (upstream layout), got {kind}")
        gap_from, previous = pos + 1, "start"
        while True:
            gap_from, at = self._next_structure(gap_from)
            char = self.buf[at]
            if char == 0x7D:  # '}'
                raise self._error("unexpected '}'", self.base + at)
            yield from self._gap(gap_from, at, previous, "end" if char == 0x5D else "element")
            if char == 0x5D:  # ']': the list is closed
                self._check_end(at + 1)
                return
            element, gap_from = self._element(at)
            yield element
            self.position += 1
            previous = "element"

    def _skip_whitespace(self, pos: int) -> int | None:
        while True:
            while pos < len(self.buf) and self.buf[pos] in _WHITESPACE:
                pos += 1
            if pos < len(self.buf):
                return pos
            if not self._more(pos):
                return None
            pos = 0

    def _next_structure(self, start: int) -> tuple[int, int]:
        """``(start, index)`` of the next structural byte after ``buf[start]`` at the list's top level;
        what lies between stays in the buffer (it is the gap between two elements)."""
        while True:
            match = _STRUCTURE.search(self.buf, start)
            if match is not None:
                return start, match.start()
            if len(self.buf) - start > MAX_ELEMENT_BYTES:
                raise self._error(f"more than {MAX_ELEMENT_BYTES >> 20} MB between two elements", self.base + start)
            if not self._more(start):
                raise self._error("the list is not closed: the file ends", self.base + len(self.buf))
            start = 0

    def _gap(self, start: int, end: int, previous: str, following: str) -> Iterator[Element]:
        """Check the commas between two elements, and yield the plain values listed there."""
        offset = self.base + start
        pieces = self.buf[start:end].split(b",")
        if previous == "element":
            if pieces[0].strip(_WHITESPACE):
                raise self._error("expected ',' after the element", offset)
            if len(pieces) == 1:
                if following == "element":
                    raise self._error("expected ',' between two elements", offset)
                return
            pieces = pieces[1:]
        if following == "element":
            if pieces[-1].strip(_WHITESPACE):
                raise self._error("expected ',' before the element", self.base + end)
            pieces = pieces[:-1]
        elif previous == "start" and len(pieces) == 1 and not pieces[0].strip(_WHITESPACE):
            return  # an empty list
        for piece in pieces:
            text = piece.strip(_WHITESPACE)
            if not text:
                raise self._error("a comma with no value before it", offset)
            try:
                value = json.loads(text)
            except (ValueError, RecursionError) as exc:
                raise self._error(f"not valid JSON ({str(exc)[:100]})", offset) from None
            yield Element(self.position, offset, value)
            self.position += 1
            offset += len(piece) + 1

    def _check_end(self, pos: int) -> None:
        """After the list: only whitespace."""
        while True:
            rest = self.buf[pos:].strip(_WHITESPACE)
            if rest:
                try:
                    rest.decode("utf-8")
                except UnicodeDecodeError:
                    raise JSONStreamError(f"not UTF-8 text after the list at byte {self.base + pos}") from None
                raise JSONStreamError(f"extra data after the list at byte {self.base + pos}")
            if not self._more(len(self.buf)):
                return
            pos = 0

    # -- one element ----------------------------------------------------------------------------------

    def _element(self, start: int) -> tuple[Element, int]:
        """Read the element starting at ``buf[start]``; returns it and the buffer index after it."""
        offset = self.base + start
        self.parts, self.size, self.copied, self.decoded = [], 0, start, []
        stack: list[int] = []
        key_end = -1  # file offset after the last string when that string is the dense key
        pos = start
        while True:
            match = _STRUCTURE.search(self.buf, pos)
            if match is None:
                # keep a dense key just read in the buffer: its ':' and '[' may be in the next chunk
                keep = max(self.copied, key_end - self.base) if key_end >= 0 else len(self.buf)
                scanned = len(self.buf) - keep
                self._refill(keep, "an element")
                pos = scanned
                continue
            at = match.start()
            char = self.buf[at]
            if char == 0x22:  # '"'
                at, end = self._string(at)
                is_key = end + 1 - at == len(self.key) and self.buf[at : end + 1] == self.key
                key_end = self.base + end + 1 if is_key else -1
                pos = end + 1
                if not stack:  # the element is a string
                    break
                continue
            if char == 0x5B and stack and stack[-1] == 0x7B and key_end >= 0 \
                    and self.base + at != self.not_dense_at and self._follows_key(key_end, at):
                self._flush(at)
                pos = self._dense_field(at)
                key_end = -1
                continue
            key_end = -1
            if char in (0x5B, 0x7B):  # '[' '{'
                stack.append(char)
                if len(stack) > MAX_DEPTH:
                    raise self._error(f"nested too deeply (more than {MAX_DEPTH} levels)", self.base + at)
                pos = at + 1
                continue
            if not stack or stack[-1] != char - 2:  # ']' and '}' are their opening byte + 2
                raise self._error(f"unexpected {chr(char)!r}", self.base + at)
            stack.pop()
            pos = at + 1
            if not stack:
                break
        self._flush(pos)
        return Element(self.position, offset, self._parse(b"".join(self.parts), offset)), pos

    def _follows_key(self, key_end: int, at: int) -> bool:
        """Whether only ``:`` and whitespace lie between the key ending at file offset ``key_end`` and ``buf[at]``."""
        start = key_end - self.base
        return start >= 0 and self.buf[start:at].strip(_WHITESPACE) == b":"

    def _string(self, start: int) -> tuple[int, int]:
        """``(start, end)``: buffer indices of the quotes of the string opened at ``buf[start]`` (the
        buffer restarts at the string when it goes on past it)."""
        search = start + 1
        while True:
            end = self.buf.find(b'"', search)
            if end != -1:
                backslashes = 0
                while self.buf[end - 1 - backslashes] == 0x5C:  # '\\'; the opening quote stops the loop
                    backslashes += 1
                if backslashes % 2 == 0:
                    return start, end
                search = end + 1
                continue
            search = len(self.buf) - start
            self._refill(start, "a string")
            start = 0

    def _dense_field(self, start: int) -> int:
        """Cut out the array at ``buf[start]`` (a dense field's value), decode it and put a placeholder
        for it in the element's text; returns the buffer index where the text goes on.

        A dense array holds no string or object, so it ends at the last ``]`` before the next ``"``,
        ``{`` or ``}``: the decoder gets the text up to there. When the decoder finds it invalid and
        its brackets do not balance, the array was not dense (it holds objects or strings): its text
        goes back into the buffer and is read as ordinary JSON.
        """
        field_offset = self.base + start
        pieces: list[bytes] = []
        tail = b""  # what follows the field's last ']' (whitespace and a comma)
        size = balance = 0  # brackets are only counted in a field too large to keep
        pos = start
        while True:
            stop = min((i for i in (self.buf.find(n, pos) for n in (b'"', b"{", b"}")) if i != -1),
                       default=len(self.buf))
            piece = self.buf[pos:stop]
            size += len(piece)
            close = piece.rfind(b"]")
            tail = piece[close + 1 :] if close != -1 else tail + piece
            if size <= MAX_FIELD_BYTES:
                pieces.append(piece)
            else:
                balance += _balance(pieces) + _balance([piece])
                pieces = []  # too large to decode: only its brackets are counted from here on
            if stop < len(self.buf):
                break
            if not self._more(len(self.buf)):
                raise self._error("the file ends inside an array", self.base + len(self.buf))
            pos = 0
        self.copied = stop
        follows_object = self.buf[stop] == 0x7B  # '{' cannot follow a value: the array holds objects
        if size > MAX_FIELD_BYTES:
            if balance != 0 or follows_object:
                raise self._error(f"an array larger than {MAX_FIELD_BYTES >> 20} MB that is not dense", field_offset)
            value: Any = OversizedField(size - len(tail))
        else:
            text = b"".join(pieces)
            try:
                if follows_object or len(tail) == len(text):
                    raise ValueError("not a dense array")
                value = self.decode(text[: len(text) - len(tail)] if tail else text)
            except ValueError as exc:
                if _balance(pieces) == 0 and not follows_object:  # a dense array, and not valid JSON
                    raise self._error(f"the {self.key.decode()} field is {exc}", field_offset + getattr(exc, "offset", 0)) \
                        from None
                # give its text back, to be read as ordinary JSON
                self.buf, self.base = text + self.buf[stop:], field_offset
                self.copied, self.not_dense_at = 0, field_offset
                return 0
        self.parts.append(json.dumps(f"{self.tag}{len(self.decoded)}").encode())
        self.parts.append(tail)
        self.size += len(tail)
        self.decoded.append(value)
        return stop

    def _parse(self, text: bytes, offset: int) -> Any:
        """``json.loads`` of an element's text, its dense fields' placeholders replaced by their values."""
        decoded, tag = self.decoded, self.tag

        def restore(obj: dict) -> dict:
            for key, value in obj.items():
                if type(value) is str and value.startswith(tag):
                    obj[key] = decoded[int(value[len(tag) :])]
            return obj

        try:
            return json.loads(text, object_hook=restore if decoded else None)
        except json.JSONDecodeError as exc:
            raise self._error(f"not valid JSON ({exc.msg})", offset) from None
        except UnicodeDecodeError:
            raise self._error("not UTF-8 text", offset) from None
        except RecursionError:
            raise self._error("nested too deeply", offset) from None
        except ValueError as exc:  # an integer beyond Python's digit limit
            raise self._error(f"not valid JSON ({str(exc)[:100]})", offset) from None


def _balance(pieces: list[bytes]) -> int:
    """Opening minus closing brackets in ``pieces``."""
    return sum(p.count(b"[") - p.count(b"]") for p in pieces)
