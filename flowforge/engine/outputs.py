"""The outputs file of one attempt: made private and empty before the command, read bounded after it.

Every attempt of a process gets its own file, under a random name, in one directory of the process
that only this user can enter (mode 0700, made on first use, removed when the process exits; the
file 0600), so no other user reads or swaps it. A task may write a file named `$FLOWFORGE_OUTPUT`
plus a suffix and rename it into place; whatever such files remain go with the attempt. After the
command the file is read up to one byte over the limit (`core.outputs.MAX_OUTPUT_BYTES`): however
much a task wrote, the worker holds no more than that. The rules of its lines are
`core.outputs.parse_outputs`.

One directory per process rather than one per attempt: making and removing a directory for every
attempt cost a short task about a tenth of its time in the worker.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import stat
import tempfile
import threading
from types import TracebackType

from flowforge.core.outputs import MAX_OUTPUT_BYTES, OUTPUT_ENV, OutputsError, parse_outputs

_folder: str | None = None
_folder_lock = threading.Lock()


def _process_folder() -> str:
    """This process's private directory for outputs files, made on first use."""
    global _folder
    with _folder_lock:
        if _folder is None or not os.path.isdir(_folder):
            _folder = tempfile.mkdtemp(prefix="flowforge-outputs-")
            atexit.register(shutil.rmtree, _folder, True)
        return _folder


class OutputsFile:
    """A context manager: `path` exists (empty) inside the block, and nothing of it after."""

    def __init__(self) -> None:
        self._folder = _process_folder()
        self.name = secrets.token_hex(8)
        self.path = os.path.join(self._folder, self.name)
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))

    def __enter__(self) -> OutputsFile:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove the file and whatever the task left beside it under its name."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            shutil.rmtree(self.path, ignore_errors=True)
        try:
            with os.scandir(self._folder) as entries:
                left = [e.path for e in entries if e.name.startswith(self.name)]
        except OSError:
            return
        for path in left:
            try:
                os.unlink(path)
            except IsADirectoryError:
                shutil.rmtree(path, ignore_errors=True)
            except OSError:
                pass

    def read(self) -> dict[str, str]:
        """The outputs the task wrote ({} when it wrote none or removed the file); OutputsError."""
        return parse_outputs(read_bounded(self.path, MAX_OUTPUT_BYTES + 1))


def read_bounded(path: str, limit: int) -> bytes:
    """At most `limit` bytes of the regular file at `path`; b"" when there is none.

    A symlink is not followed, and a FIFO or device put in the file's place is refused without
    waiting on it (opened non-blocking, checked before a byte is read).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return b""
    except OSError as exc:  # ELOOP: a symlink in its place; EACCES: its mode was changed
        raise OutputsError(f"cannot read ${OUTPUT_ENV}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OutputsError(f"${OUTPUT_ENV} is no longer a regular file")
        chunks: list[bytes] = []
        left = limit
        while left > 0:
            chunk = os.read(fd, min(left, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
