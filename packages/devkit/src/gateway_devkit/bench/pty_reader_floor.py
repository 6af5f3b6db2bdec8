"""The serial floor under ingest: a bare Python reader on a pty, how soon any Python process here
sees a frame's last byte (blocking os.read, no pyserial, no threads).

    python -m gateway_devkit.bench.pty_reader_floor PTY FRAMES FRAME_SIZE

prints one receive time (time.time()) per frame.
"""

from __future__ import annotations

import os
import sys
import time


def main(argv: list[str]) -> None:
    fd = os.open(argv[0], os.O_RDONLY | os.O_NOCTTY)
    frames, size = int(argv[1]), int(argv[2])
    stamps: list[float] = []
    held = 0
    while len(stamps) < frames:
        held += len(os.read(fd, 4096))
        now = time.time()
        while held >= size:
            held -= size
            stamps.append(now)
    print("\n".join(repr(s) for s in stamps))


if __name__ == "__main__":
    main(sys.argv[1:])
