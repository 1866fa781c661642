"""The CLI's exit codes and what each means: for `--help`, for JSON errors, for the commands."""

from __future__ import annotations

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT, EXIT_UNREACHABLE, EXIT_GAVE_UP = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130  # the shell's convention for SIGINT
EXIT_MEANINGS = {
    EXIT_OK: "success",
    EXIT_RUN_FAILED: "the run failed, or the API failed",
    EXIT_BAD_INPUT: "bad input: usage, an invalid DAG file, an unknown id or a refused request",
    EXIT_UNREACHABLE: "the API could not be reached",
    EXIT_GAVE_UP: "gave up waiting (--timeout); the run carries on",
    EXIT_INTERRUPTED: "interrupted",
}
