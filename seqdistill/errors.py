"""One exception type for user-facing errors: the CLI prints its message and exits 2, no traceback."""


class SeqdistillError(Exception):
    """A problem with the user's input (recipe, flag, file, data) that they can fix."""


class ConfigError(SeqdistillError):
    pass


class DataError(SeqdistillError):
    pass
