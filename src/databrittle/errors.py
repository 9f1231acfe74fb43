"""The one exception type the package raises for bad input.

Its message is a single line naming the file or config key and what is wrong, so that
Snakemake logs and the CLI show the cause without a traceback hunt.
"""


class InputError(ValueError):
    """Bad user input (config key, file, argument): a one-line message naming it."""
