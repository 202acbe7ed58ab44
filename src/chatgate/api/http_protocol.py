"""uvicorn's httptools protocol, sending each response's head and body in one write.

uvicorn writes a response's head when the app sends `http.response.start` and its body when
the app sends `http.response.body`: two `send()` system calls and two TCP segments for every
small answer. Under load that was about a fifth of the event loop's time on the inbound path
(py-spy, docs/performance.md). Here the transport holds a write that ends a response head
(a blank line) until the next write, which goes out with it, or until the loop's next turn,
whichever comes first: a head is never held longer than that, so nothing waits on it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_END_OF_HEAD = b"\r\n\r\n"
# A larger body is not copied to join its head: two writes cost less than the copy then.
_JOIN_AT_MOST = 64 * 1024


class HeadHoldingTransport:
    """Wraps a transport: a write ending in a blank line is joined to the next write, or sent
    at the loop's next turn if none follows (a HEAD answer, a 204, a streaming pause)."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if len(data) <= _JOIN_AT_MOST:
                self._transport.write(held + bytes(data))
            else:
                self._transport.write(held)
                self._transport.write(data)
        elif data[-4:] == _END_OF_HEAD:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        """Send a held head now (it is due: the turn that wrote it is over)."""
        held = self._held
        if held is None:
            return
        self._held = None
        if not self._transport.is_closing():
            self._transport.write(held)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()  # what was written before the switch goes first
        self._transport.set_protocol(protocol)

    def __getattr__(self, name: str) -> Any:
        # The rest of the transport's interface (get_write_buffer_size, can_write_eof, ...).
        return getattr(self._transport, name)


class HeadHoldingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's `http="httptools"` protocol over a HeadHoldingTransport: what `chatgate serve`
    passes as uvicorn's `http` (the tests' servers too)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(HeadHoldingTransport(transport, self.loop))  # type: ignore[arg-type]
