"""The entry points (`seva` and its commands, the demo) and the composition root.

The exit codes every command shares (SPEC section 2).
"""

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
