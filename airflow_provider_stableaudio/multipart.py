"""A ``multipart/form-data`` body of known length that streams its file: never read whole into memory.

Stability's API takes every request as ``multipart/form-data``: the form fields as text, and the input
clip, if any, as a file part. Send it with ``requests`` as the body itself or its chunks::

    session.post(url, data=body.iter_chunks(), headers={"Content-Type": body.content_type})

Both have a length (``len()``), from which ``requests`` announces ``Content-Length`` and streams the
chunks as they are. (A bare generator would make ``requests`` add ``Transfer-Encoding: chunked``, even
beside a ``Content-Length`` header given by hand: a request servers refuse.) No Airflow imports.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_stableaudio.input_audio import InputAudio

CRLF = b"\r\n"


class SizedChunks(Iterator[bytes]):
    """An iterator of a body's chunks whose ``len()`` is the body's length in bytes.

    ``requests`` reads ``len()`` of a streamed body to send ``Content-Length`` instead of chunked encoding.
    """

    def __init__(self, chunks: Iterator[bytes], length: int) -> None:
        self._chunks = chunks
        self._length = length

    def __next__(self) -> bytes:
        return next(self._chunks)

    def __len__(self) -> int:
        return self._length


def _quoted(text: str) -> str:
    # RFC 7578 / the HTML form encoding: quote, CR and LF percent-encoded inside a quoted name.
    return text.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class MultipartBody:
    """A ``multipart/form-data`` body: text fields, then an optional file part streamed from storage.

    Iterating it (or :meth:`iter_chunks`) yields the body anew each time, so a retry can send it again.

    :param fields: ``(name, value)`` pairs, in order, each value already text.
    :param file_field: the form name of the file part (Stability's is ``audio``).
    :param file: the checked input clip, sent as the file part; ``None`` sends no file part.
    :param chunk_size: bytes read from the file at a time.
    """

    def __init__(
        self,
        fields: list[tuple[str, str]],
        file_field: str | None = None,
        file: InputAudio | None = None,
        *,
        chunk_size: int = 1 << 16,
    ) -> None:
        if file is not None and file_field is None:
            raise ValueError("a file needs file_field, the form name of its part")
        self.file_field = file_field
        self.file = file
        self.chunk_size = chunk_size
        texts = [(name, value.encode()) for name, value in fields]
        # A boundary must not occur in the content: random, and checked against the text fields.
        while True:
            self.boundary = "stableaudio-" + secrets.token_hex(16)
            if not any(self.boundary.encode() in value for _, value in texts):
                break
        delimiter = b"--" + self.boundary.encode() + CRLF
        head = b"".join(
            delimiter
            + f'Content-Disposition: form-data; name="{_quoted(name)}"'.encode()
            + CRLF
            + CRLF
            + value
            + CRLF
            for name, value in texts
        )
        if file is not None and file_field is not None:
            head += (
                delimiter
                + f'Content-Disposition: form-data; name="{_quoted(file_field)}"; '
                f'filename="{_quoted(file.file_name)}"'.encode()
                + CRLF
                + f"Content-Type: {file.content_type}".encode()
                + CRLF
                + CRLF
            )
            self._tail = CRLF + b"--" + self.boundary.encode() + b"--" + CRLF
        else:
            self._tail = b"--" + self.boundary.encode() + b"--" + CRLF
        self._head = head

    @property
    def content_type(self) -> str:
        """The ``Content-Type`` header value, with the boundary."""
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def content_length(self) -> int:
        """The body's exact length in bytes."""
        return len(self._head) + (self.file.size if self.file is not None else 0) + len(self._tail)

    def iter_chunks(self) -> SizedChunks:
        """The body's bytes, read anew: the text parts, the file ``chunk_size`` at a time, the end.

        ``len()`` of the iterator is :attr:`content_length`.
        """
        return SizedChunks(self._chunks(), self.content_length)

    def _chunks(self) -> Iterator[bytes]:
        yield self._head
        if self.file is not None:
            yield from self.file.chunks(self.chunk_size)
        yield self._tail

    def __iter__(self) -> Iterator[bytes]:
        return self.iter_chunks()

    def __len__(self) -> int:
        return self.content_length
