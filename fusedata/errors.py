"""The one exception type that means "the user's input is wrong".

CLIs catch ``FusekitError`` and turn it into one clear line on stderr and exit code 2;
anything else is a bug and keeps its traceback.
"""


class FusekitError(Exception):
    """Bad input: a malformed recipe or dataset, an unknown name, an unreachable endpoint,
    a model that won't load. The message is shown to the user as is."""
