"""Test helper: a bare MicroPython REPL (unix port) on a pseudo-terminal, to deploy to without the virtual rig."""
from __future__ import annotations

import os
import pty
import select
import subprocess
import threading
import tty
from pathlib import Path

from tests.support.mpy import micropython_binary


class ReplRig:
    """`micropython -i` with its cwd as the device root, reachable by mpremote at `self.port`.

    The interpreter holds one pty; a bridge thread copies bytes to a second pty whose slave path
    is the port (two programs must not share one pty slave). `unplug()` closes the bridge, which
    to mpremote looks like a USB cable pulled mid-transfer.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dev_m, dev_s = pty.openpty()
        self.host_m, host_s = pty.openpty()
        tty.setraw(dev_s)
        tty.setraw(host_s)
        self.port = os.ttyname(host_s)
        self._host_s = host_s
        self.proc = subprocess.Popen([micropython_binary(), "-i"], stdin=dev_s, stdout=dev_s, stderr=dev_s,
                                     cwd=str(root), close_fds=True)
        os.close(dev_s)
        self._stop = False
        self.thread = threading.Thread(target=self._bridge, daemon=True)
        self.thread.start()

    def _bridge(self) -> None:
        fds = [self.dev_m, self.host_m]
        while not self._stop:
            try:
                ready, _, _ = select.select(fds, [], [], 0.05)
                for fd in ready:
                    data = os.read(fd, 4096)
                    os.write(self.host_m if fd == self.dev_m else self.dev_m, data)
            except OSError:
                return

    def unplug(self) -> None:
        """Stop forwarding and close the host side: the port path disappears."""
        self._stop = True
        self.thread.join(1)
        for fd in (self.host_m, self._host_s):
            try:
                os.close(fd)
            except OSError:
                pass

    def close(self) -> None:
        self.unplug()
        self.proc.kill()
        self.proc.wait(5)
        try:
            os.close(self.dev_m)
        except OSError:
            pass
