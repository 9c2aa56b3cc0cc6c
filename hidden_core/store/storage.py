"""The file system under a results store: opened from a local path or a URL, files deleted
without minding a concurrent deleter, and a full disk named as such.

Every deletion of the store goes through `delete_quietly` (called as `storage.delete_quietly`,
so a test can stand in for it: a kill between a merged file and deleting its inputs).
"""

from __future__ import annotations

import errno
import os

import pyarrow as pa
import pyarrow.fs as pafs

from hidden_core.errors import ConfigError


def open_filesystem(root: str) -> tuple[pafs.FileSystem, str]:
    if "://" not in root and not root.startswith("mock:"):
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(root))
    try:
        return pafs.FileSystem.from_uri(root)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as arrow_err:
        try:  # any fsspec backend (memory://, az://, ...) through pyarrow's adapter
            import fsspec

            fs, path = fsspec.core.url_to_fs(root)
        except (ImportError, ValueError) as err:
            raise ConfigError([f"results: cannot open {root!r}: {arrow_err}; {err}"]) from None
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path.rstrip("/")


def no_space(err: OSError) -> bool:
    return err.errno == errno.ENOSPC or "No space left on device" in str(err) or "errno 28" in str(err)


def delete_quietly(fs: pafs.FileSystem, path: str) -> None:
    try:
        fs.delete_file(path)
    except (FileNotFoundError, OSError):
        pass  # a concurrent compaction took it first; its rows are in that one's output
