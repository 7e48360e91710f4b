"""The one error type tinyasc raises for bad input; the CLI prints it as a single line."""


class TinyascError(Exception):
    """A user-facing problem (bad file, bad config, missing data). The message names what and why."""
