"""Misbehaving peers on loopback, for proving that nothing the runbook builds can hang.

* ``BlackHole``: accepts every TCP connection and never reads or writes a byte (a hung
  service, or a proxy in front of a dead one).
* ``Dropper``: an address whose SYNs are dropped: a listener with a full accept queue that
  never accepts, so ``connect`` waits for its timeout (a firewall that drops, a host gone).
"""

from __future__ import annotations

import socket
import threading


class BlackHole:
    """A listener that accepts connections and never answers."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        self.held: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.closed = True
        self.server.close()
        for conn in self.held:
            conn.close()


class Dropper:
    """A port whose connection attempts time out: its accept queue (length 1) is full."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(0)
        self.port: int = self.server.getsockname()[1]
        self.filler = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        probe = socket.socket()
        probe.settimeout(0.3)
        try:
            probe.connect(("127.0.0.1", self.port))
        except TimeoutError:
            pass  # dropped, as intended
        else:
            raise RuntimeError("the kernel accepted past a full queue: no dropping address")
        finally:
            probe.close()

    def close(self) -> None:
        self.filler.close()
        self.server.close()
