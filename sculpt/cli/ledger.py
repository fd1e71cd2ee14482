"""``sculpt ledger check`` and ``sculpt ledger backup``: look after the state file itself.

``check`` reads the ledger without writing to it (it works on a ledger other verbs refuse): SQLite's
integrity check, the schema version and tables, every row's JSON, the journal's states, each version's spec,
and rows sculpt quarantined. It exits 0 when all is well, 1 listing the problems. ``--json`` prints
``{"path", "ok", "schema_version", "integrity", "rows": {table: n}, "quarantined", "problems": [{"table",
"row", "problem"}]}``.

``backup`` copies the ledger with SQLite's online backup API (consistent while other sculpt processes
write) to ``--to FILE`` or ``<state dir>/backups/ledger-<UTC time>.db`` and prints the path (``--json``:
``{"path", "bytes"}``). To restore one, stop sculpt (``sculpt down``) and copy it over ``ledger.db``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sculpt.cli._common import DEFAULT_SPEC, JsonOpt, SpecOpt, emit_json

app = typer.Typer(help="Check or back up the ledger (the state file in .sculpt/ or $SCULPT_HOME).",
                  no_args_is_help=True)

ToOpt = Annotated[Path | None, typer.Option("--to", help="backup file (default: <state dir>/backups/"
                                                         "ledger-<UTC time>.db)")]


def _ledger_path(spec: Path) -> Path:
    from sculpt.ledger import state_dir

    return state_dir(spec) / "ledger.db"


@app.command("check")
def check(spec: SpecOpt = DEFAULT_SPEC, json_out: JsonOpt = False) -> None:
    """Check the ledger (integrity, schema, every row); exit 1 listing the problems."""
    from sculpt.domain.errors import LedgerError
    from sculpt.ledger import check_ledger

    path = _ledger_path(spec)
    report = check_ledger(path)
    if json_out:
        emit_json(report)
    else:
        rows = ", ".join(f"{n} {t}" for t, n in sorted(report["rows"].items()) if n) or "no rows"
        integrity = "ok" if report["integrity"] == "ok" else "FAILED" if report["integrity"] else "not run"
        typer.echo(f"ledger {path}: schema version {report['schema_version'] or '?'}, integrity {integrity}, {rows}")
        for p in report["problems"]:
            where = f"{p['table']} row {p['row']}: " if p["row"] is not None else f"{p['table']}: " if p["table"] else ""
            typer.echo(f"problem: {where}{p['problem']}")
    if not report["ok"]:
        n = len(report["problems"])
        raise LedgerError(f"ledger {path} has {n if n < 200 else 'many'} problem(s)",
                          "restore a backup (`sculpt ledger backup` makes them), or repair or delete the rows named "
                          "above with sqlite3")


@app.command("backup")
def backup(spec: SpecOpt = DEFAULT_SPEC, to: ToOpt = None, json_out: JsonOpt = False) -> None:
    """Copy the ledger with SQLite's online backup API; print the backup's path."""
    from sculpt.ledger import backup_ledger, default_backup_path

    path = _ledger_path(spec)
    dest = backup_ledger(path, to if to is not None else default_backup_path(path))
    if json_out:
        emit_json({"path": str(dest), "bytes": dest.stat().st_size})
    else:
        typer.echo(str(dest))
