"""The one place where Pulumi Automation API failures become sculpt errors (one line, with the fix).

::

    FileNotFoundError 'pulumi'      -> PulumiCliMissing (ConfigError): install the CLI or use engine: local
    InvalidVersionError             -> ConfigError: upgrade the CLI
    ConcurrentUpdateError           -> LockedError: another update holds the stack
    StackNotFoundError              -> NotFoundError
    InlineSourceRuntimeError,
    RuntimeError, CompilationError  -> ProviderError(retryable=False): the program failed
    CommandError (anything else)    -> ProviderError(retryable=True): the CLI or the cloud failed

Only this module and ``pulumi_engine`` import ``pulumi.automation``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from sculpt.domain.errors import ConfigError, LockedError, NotFoundError, ProviderError, SculptError

INSTALL_HINT = ("install the Pulumi CLI: https://www.pulumi.com/docs/install/ "
                "(curl -fsSL https://get.pulumi.com | sh), or set engine: local in sculpt.yaml")


class PulumiCliMissing(ConfigError):
    """``engine: pulumi`` needs the ``pulumi`` CLI on PATH and it is not there."""


def first_error_line(text: str, limit: int = 300) -> str:
    """The most telling line of a CLI failure: the first ``error:`` line, else the last non-empty one."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if re.match(r"^(error|panic)\b", ln, re.IGNORECASE):
            return re.sub(r"^error:\s*", "", ln, flags=re.IGNORECASE)[:limit]
    return (lines[-1] if lines else "no output")[:limit]


def to_sculpt_error(exc: BaseException, stack: str) -> SculptError | None:
    """The sculpt error for an Automation API failure, or ``None`` when ``exc`` is not one of those."""
    if isinstance(exc, SculptError):
        return exc
    if isinstance(exc, FileNotFoundError) and "pulumi" in str(exc.filename or exc):
        return PulumiCliMissing("the Pulumi CLI ('pulumi') is not on PATH; engine: pulumi needs it", INSTALL_HINT)
    from pulumi.automation import errors as auto_errors

    if isinstance(exc, auto_errors.InvalidVersionError):
        return ConfigError(f"the Pulumi CLI is too old for this SDK: {str(exc).splitlines()[0]}",
                           "upgrade the Pulumi CLI: https://www.pulumi.com/docs/install/")
    if not isinstance(exc, auto_errors.CommandError):
        return None
    detail = first_error_line(_output_of(exc))
    if isinstance(exc, auto_errors.ConcurrentUpdateError):
        return LockedError(
            f"stack '{stack}' is locked by another Pulumi update ({detail})",
            f"wait for it to finish; if none is running, clear the stale lock with `pulumi cancel --stack {stack}`",
        )
    if isinstance(exc, auto_errors.StackNotFoundError):
        return NotFoundError(f"Pulumi stack '{stack}' does not exist in this backend",
                             "check backend_url in sculpt.yaml, or run `sculpt up` to create it")
    if isinstance(exc, auto_errors.InlineSourceRuntimeError | auto_errors.RuntimeError |
                  auto_errors.CompilationError):
        return ProviderError(f"the stack program for '{stack}' failed: {detail}",
                             "fix the fleet or the stack program (stacks/); `sculpt -v` shows details",
                             retryable=False)
    return ProviderError(f"pulumi failed on stack '{stack}': {detail}",
                         "check cloud credentials and quotas, then retry; `sculpt -v` shows the full output")


def _output_of(exc: BaseException) -> str:
    text = str(exc)
    m = re.search(r"stderr:(.*)$", text, re.DOTALL)
    stderr = m.group(1) if m else ""
    return stderr if stderr.strip() else text


@contextlib.contextmanager
def translated(stack: str) -> Iterator[None]:
    """Run a block of Automation API calls; their failures leave it as sculpt errors."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - translated below, or re-raised unchanged
        err = to_sculpt_error(e, stack)
        if err is None or err is e:
            raise
        raise err from e
