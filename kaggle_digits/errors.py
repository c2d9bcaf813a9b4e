"""The one exception type for user mistakes: the CLI prints it as a single line and exits 2."""


class UserError(Exception):
    """A mistake the user can fix (bad file, bad option, missing credentials).

    The message is one line that names the file, row, column or option at fault.
    Bugs raise anything else and keep their traceback.
    """

    exit_code = 2
