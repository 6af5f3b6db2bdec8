"""Disks that fill up, for the disk-full tests: Redis's AOF on a filesystem of its own.

`SmallDisk` is an SD card in miniature: an ext4 image of a few MiB, loop-mounted (so, root
only), that a filler file fills to the last block and frees again. ext4 gives what the Pi's card
gives: `write(2)` fails with ENOSPC once the blocks are gone, whatever the page cache holds.

`aof_on_full_device` needs no root: it points a stopped Redis's incremental AOF file at
`/dev/full`, where every write fails with ENOSPC, so the next write Redis tries to append fails
as on a full disk (with `appendfsync everysec` Redis then refuses writes with MISCONF; with
`always` it exits). `BGREWRITEAOF` ends it: Redis opens a new incremental file next to the old.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from typing import TYPE_CHECKING

import redis

from gateway_devkit.polling import wait_until
from gateway_devkit.servers import ServerError, find_binary

if TYPE_CHECKING:
    from pathlib import Path

    from gateway_devkit.servers import PrivateRedis

__all__ = ["DiskError", "SmallDisk", "aof_on_full_device", "needs_root"]

_CHUNK = 1 << 16
_FULL_DEVICE = "/dev/full"
_PROBE_KEY = "gateway-devkit:full-device"


class DiskError(RuntimeError):
    """The small disk could not be made, mounted or unmounted."""


def needs_root() -> str | None:
    """Why a SmallDisk cannot be made by this process (None: it can)."""
    if os.geteuid() != 0:
        return (
            "this test mounts a small ext4 image (mount -o loop) for Redis's AOF and fills it: "
            "it needs root (the CI runs it as root); run it as root, e.g. `sudo -E make test`"
        )
    for tool in ("mkfs.ext4", "mount", "umount"):
        if find_binary(tool) is None:
            return f"`{tool}` is not installed: the disk-full test needs it (e2fsprogs, mount)"
    return None


def _run(*argv: str) -> None:
    binary = find_binary(argv[0])
    if binary is None:
        raise DiskError(f"`{argv[0]}` is not installed")
    result = subprocess.run([binary, *argv[1:]], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise DiskError(f"{' '.join(argv)}: {result.stderr.strip() or result.returncode}")


class SmallDisk:
    """An ext4 filesystem of `size_mib` MiB on a loop-mounted image in `directory`, mounted on
    `directory/mnt`; `fill()` takes every free block, `free()` gives them back. No blocks are
    reserved for root (`-m 0`): the test's Redis runs as root, the Pi's as `redis`, and neither
    should see space the other cannot."""

    def __init__(self, directory: Path, size_mib: int) -> None:
        self.directory = directory
        self.size_mib = size_mib
        self.image = directory / "disk.img"
        self.mount_point = directory / "mnt"
        self.filler = self.mount_point / "filler"
        self.mounted = False

    def mount(self) -> SmallDisk:
        reason = needs_root()
        if reason is not None:
            raise DiskError(reason)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.mount_point.mkdir(exist_ok=True)
        with self.image.open("wb") as image:
            image.truncate(self.size_mib << 20)
        _run("mkfs.ext4", "-q", "-F", "-m", "0", "-L", "smalldisk", str(self.image))
        _run("mount", "-o", "loop", str(self.image), str(self.mount_point))
        self.mounted = True
        return self

    def unmount(self) -> None:
        """Unmount (whoever still has files open there must be stopped first); idempotent."""
        if not self.mounted:
            return
        try:
            _run("umount", str(self.mount_point))
        except DiskError:
            _run("umount", "--lazy", str(self.mount_point))  # detached now, freed when closed
        self.mounted = False
        with contextlib.suppress(OSError):
            self.image.unlink()

    def free_bytes(self) -> int:
        """What an unprivileged writer could still write (`df`'s Avail)."""
        stats = os.statvfs(self.mount_point)
        return stats.f_bavail * stats.f_frsize

    def fill(self, leave_bytes: int = 0) -> int:
        """Write the filler until the filesystem refuses (ENOSPC), then give `leave_bytes`
        back; the bytes the filler holds."""
        zeros = bytes(_CHUNK)
        with self.filler.open("ab", buffering=0) as filler:
            chunk = _CHUNK
            while chunk:
                try:
                    filler.write(zeros[:chunk])
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    chunk //= 2  # the last blocks, down to single bytes of a block's tail
            size = filler.tell()
            if leave_bytes:
                size = max(0, size - leave_bytes)
                filler.truncate(size)
            os.fsync(filler.fileno())
        return size

    def free(self) -> None:
        """Remove the filler: its blocks are free again."""
        self.filler.unlink(missing_ok=True)
        os.sync()


def aof_on_full_device(server: PrivateRedis) -> None:
    """Restart `server` (started once already, with an AOF) with its incremental AOF file on
    /dev/full, and make it try to append once (a key that expires at once): under `everysec`
    it refuses writes with MISCONF from then on, until BGREWRITEAOF gives it a new file. The
    incremental file's content is lost (BGREWRITEAOF first keeps the data in the base file)."""
    directory = server.data_dir / "appendonlydir"
    incremental = sorted(directory.glob("*.incr.aof"))
    if server.appendfsync is None or not incremental:
        raise ServerError(f"no incremental AOF file in {directory}: start it with an AOF first")
    server.stop()
    for path in incremental:  # the manifest lists the newest; the others are history
        path.unlink()
        path.symlink_to(_FULL_DEVICE)
    server.start()
    client = server.client()
    try:
        client.set(_PROBE_KEY, b"", px=1)  # answered, then its append fails

        def refusing() -> bool:
            try:
                client.ping()
            except redis.ResponseError:
                return True
            return False

        if server.appendfsync == "everysec" and not wait_until(refusing, 5):
            raise ServerError("Redis still takes writes with its AOF on /dev/full")
    except redis.ConnectionError:  # `always`: it exited, as it should
        pass
    finally:
        client.close()
