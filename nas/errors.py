"""User-facing errors.

Everything a user can get wrong (a config value, a path, a genotype, a checkpoint) raises a
``UserError``; the command-line entry points turn it into one line on stderr and a non-zero exit
code instead of a traceback. ``ConfigError`` is the subclass for invalid configuration, which
exits with code 2 like argparse does.
"""


class UserError(Exception):
    """A problem the user can fix; the message is shown as a single line."""

    exit_code = 1


class ConfigError(UserError):
    """An invalid configuration value, detected at start-up."""

    exit_code = 2


class DataError(UserError):
    """A dataset that is missing, empty or unreadable."""


class GenotypeError(ConfigError):
    """A genotype that cannot be read or does not describe a valid cell."""


class CheckpointError(UserError):
    """A checkpoint that is missing, truncated or not one of ours."""
