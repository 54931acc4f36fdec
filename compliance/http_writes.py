"""One socket write per turn of the event loop for each connection of the deployed server.

uvicorn writes a response's head and its body with two calls to the transport, and uvloop
makes each a system call at once: for the consent check, whose whole answer is a few hundred
bytes, the two writes were a fifth of a worker's time. ``CorkedTransport`` keeps what is
written to a connection during one turn of the loop and hands it to the real transport in
one piece at the start of the next, the way TCP_CORK holds a socket's data until it is
released. Closing the connection sends what is kept first; aborting it drops it. Everything
else (flow control, the peer's address, closing state) is the real transport's.
"""

from __future__ import annotations

import asyncio


class CorkedTransport:
    __slots__ = ("_kept", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._kept: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._kept is None:
            self._kept = [data]
            self._loop.call_soon(self._release)
        else:
            self._kept.append(data)

    def writelines(self, lines) -> None:
        for data in lines:
            self.write(data)

    def _release(self) -> None:
        kept, self._kept = self._kept, None
        if kept and not self._transport.is_closing():
            self._transport.write(kept[0] if len(kept) == 1 else b"".join(kept))

    def close(self) -> None:
        self._release()
        self._transport.close()

    def abort(self) -> None:
        self._kept = None
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        kept = sum(map(len, self._kept)) if self._kept else 0
        return self._transport.get_write_buffer_size() + kept

    def __getattr__(self, name: str):
        return getattr(self._transport, name)
