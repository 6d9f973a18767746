"""A small asyncio FIX initiator for acceptor tests (runs in the same event loop as the acceptor)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fix.codec import FrameReader, format_timestamp, parse_frame
from fix.message import Message, encode


class AsyncFixClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sender: str, target: str) -> None:
        self.reader, self.writer = reader, writer
        self.sender, self.target = sender, target
        self.seq = 1
        self.frames = FrameReader()
        self.pending: list[Message] = []

    @classmethod
    async def connect(cls, port: int, sender: str = "TW", target: str = "ISLD", ssl: Any = None,
                      host: str = "127.0.0.1") -> AsyncFixClient:
        reader, writer = await asyncio.open_connection(host, port, ssl=ssl)
        return cls(reader, writer, sender, target)

    async def send(self, msg_type: str, *body: tuple[int, object], seq: int | None = None,
                   header: tuple[tuple[int, object], ...] = ()) -> None:
        n = self.seq if seq is None else seq
        fields = [(35, msg_type), (34, n), (49, self.sender), (52, format_timestamp(time.time())),
                  (56, self.target), *header, *body]
        self.writer.write(encode(Message.build(fields).fields))
        await self.writer.drain()
        if seq is None:
            self.seq += 1

    async def logon(self, hb: int = 30, reset: bool = True) -> Message | None:
        body: list[tuple[int, object]] = [(98, 0), (108, hb)]
        if reset:
            body.append((141, "Y"))
        await self.send("A", *body)
        return await self.recv()

    async def recv(self, timeout: float = 5.0) -> Message | None:
        """The next message, or None if the acceptor closed the connection (or nothing came)."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                data = await asyncio.wait_for(self.reader.read(65536), left)
            except (TimeoutError, ConnectionError, OSError):
                return None
            if not data:
                return None
            self.pending += [parse_frame(f) for f in self.frames.feed(data)]
        return self.pending.pop(0)

    async def closed(self, timeout: float = 5.0) -> bool:
        """True once the acceptor closed the connection; messages meanwhile are kept."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                data = await asyncio.wait_for(self.reader.read(65536), left)
            except TimeoutError:
                return False
            except (ConnectionError, OSError):
                return True
            if not data:
                return True
            self.pending += [parse_frame(f) for f in self.frames.feed(data)]

    def close(self) -> None:
        self.writer.close()
