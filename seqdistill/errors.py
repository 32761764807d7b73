"""One exception type for user-facing errors: the CLI prints its message and exits 2, no traceback."""


class SeqdistillError(Exception):
    """A problem with the user's input (recipe, flag, file, data) that they can fix."""


class ConfigError(SeqdistillError):
    pass


class DataError(SeqdistillError):
    pass


# disk problems the user fixes (permissions, a read-only or full disk), as opposed to bugs
_USER_ERRNOS = {"EACCES", "EPERM", "EROFS", "ENOSPC", "EDQUOT"}


# the output dir of the stage writing now (Store.prepare sets it): a full disk's error from write() names no file
current_output: str | None = None


def disk_error(exc: BaseException) -> SeqdistillError | None:
    """A one-line error naming the path for a permission / read-only / full-disk OSError, else None."""
    import errno

    if not isinstance(exc, OSError) or errno.errorcode.get(exc.errno or 0) not in _USER_ERRNOS:
        return None
    path = exc.filename or current_output or "(the output dir)"
    hint = {"ENOSPC": "the disk is full", "EDQUOT": "the disk quota is exceeded",
            "EROFS": "the file system is read-only"}.get(errno.errorcode[exc.errno], "permission denied")
    return SeqdistillError(f"{path}: {hint} ({exc.strerror}); data already written is kept")
