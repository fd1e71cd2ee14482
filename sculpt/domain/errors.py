"""sculpt's error hierarchy: every error a user can cause says what is wrong and how to fix it.

::

    SculptError                 exit 1; one line: "<what is wrong>. To fix: <what to do>"
    ├── PermanentError          retrying will not help
    │   ├── ConfigError         bad sculpt.yaml, bad flag, unknown shape/region/provider
    │   ├── NotFoundError       no such stack, version, migration, trace file
    │   ├── LedgerError         the ledger file cannot be opened, read or written (damaged, full disk, ...)
    │   └── PolicyViolation     exit 2: a policy rule blocks the plan
    └── TemporaryError          retrying later may help
        ├── LockedError         another writer holds the stack lock
        └── ProviderError       the provider (processes, cloud API) failed; may carry ``retryable``

The CLI prints ``str(error)`` on one line and exits with ``error.exit_code``; it never shows a traceback
for a ``SculptError``.
"""

from __future__ import annotations


class SculptError(Exception):
    """Base class. ``fix`` is the hint after "To fix:"; ``exit_code`` is what the CLI returns."""

    exit_code: int = 1
    retryable: bool = False

    def __init__(self, message: str, fix: str | None = None) -> None:
        self.message = message.rstrip(".")
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.fix:
            return f"{self.message}. To fix: {self.fix.rstrip('.')}."
        return f"{self.message}."


class PermanentError(SculptError):
    """Retrying the same call will fail the same way."""


class TemporaryError(SculptError):
    """The same call may succeed later."""

    retryable = True


class ConfigError(PermanentError):
    """The spec, a flag or an argument is invalid."""


class NotFoundError(PermanentError):
    """A named thing (stack, version, migration, file) does not exist."""


class LedgerError(PermanentError):
    """The ledger file is damaged, unreadable or unwritable; the message names the file, the fix says how to
    recover (restore a backup, ``sculpt ledger check``, free space, make the directory writable)."""


class PolicyViolation(PermanentError):
    """A policy rule blocks the plan (exit code 2, as ``sculpt plan`` documents)."""

    exit_code = 2


class LockedError(TemporaryError):
    """Another live process holds the stack's lock."""


class ProviderError(TemporaryError):
    """The provider failed to do what was asked; ``retryable`` says whether to try again."""

    def __init__(self, message: str, fix: str | None = None, *, retryable: bool = True) -> None:
        super().__init__(message, fix)
        self.retryable = retryable
