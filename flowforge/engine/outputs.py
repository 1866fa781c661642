"""The outputs file of one attempt: made private and empty before the command, read bounded after it.

The file sits alone in a new directory only this user can enter (mode 0700, the file 0600), so no
other user reads or swaps it, and a task may also write another file there and rename it into place.
After the command it is read up to one byte over the limit (`core.outputs.MAX_OUTPUT_BYTES`):
however much a task wrote, the worker holds no more than that. The rules of its lines are
`core.outputs.parse_outputs`. The directory goes when the attempt ends.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from types import TracebackType

from flowforge.core.outputs import MAX_OUTPUT_BYTES, OUTPUT_ENV, OutputsError, parse_outputs

FILE_NAME = "outputs"


class OutputsFile:
    """A context manager: `path` exists (empty) inside the block, and nothing of it after."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="flowforge-outputs-")
        self.path = os.path.join(self._dir, FILE_NAME)
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except BaseException:
            self.remove()
            raise

    def __enter__(self) -> OutputsFile:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove the directory and whatever the task left in it."""
        shutil.rmtree(self._dir, ignore_errors=True)

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
