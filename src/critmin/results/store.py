"""The results store: an embedded DuckDB database of runs, with each run's result cubes as Parquet files.

Layout (see ``docs/store.md``)::

    store.duckdb                        the database: tables meta, runs, draws, metrics, chunks
    store.duckdb.parts/RUN_ID/chunk-00000.parquet, chunk-00001.parquet, ...   the cubes, one file per chunk

The ensemble runner hands each finished chunk of draws to :meth:`Store.write_chunk`. A chunk is written in
two steps: its cube goes to a Parquet file (written under a temporary name, then renamed), then ONE
transaction inserts the chunk's per-draw metrics and its row in ``chunks``. A chunk is complete only when its
``chunks`` row exists, so a crash at any point leaves nothing that counts: a Parquet file without a
``chunks`` row is ignored and overwritten when the chunk is written again. :meth:`Store.completed_draws` is
what a resumed run subtracts from ``range(n_draws)``, and :meth:`Store.finish_run` refuses ``complete``
unless every draw is in exactly one complete chunk.

Each operation opens the database, does its work and closes it, so several processes can use one store one
after another (DuckDB lets one process at a time hold the file; a process that finds it held waits for up to
``lock_timeout_s`` seconds). Inside ``with Store(...) as store:`` one connection is held for the whole block:
faster for many operations, but other processes wait until the block ends.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xarray as xr

from critmin.core.errors import CritminError

#: Version of the database schema and of the Parquet cube layout; a store of another version is refused.
SCHEMA_VERSION = 1

RunStatus = Literal["running", "complete", "failed", "interrupted"]
#: Statuses :meth:`Store.finish_run` accepts.
FINAL_STATUSES: tuple[str, ...] = ("complete", "failed", "interrupted")

#: Columns of the per-draw headline metrics handed to :meth:`Store.write_chunk`.
METRIC_COLUMNS = ("draw", "metric", "mineral", "region", "period", "value", "unit")

#: Label dimensions of the cube that are always columns of the chunk files (null where a variable lacks one).
CUBE_DIMS = ("mineral", "stage", "region", "partner", "sector", "period")

#: Columns of the tidy long export of a cube (``critmin export``), as in ``critmin run --export`` plus ``draw``.
EXPORT_COLUMNS = ["variable", "mineral", "stage", "region", "partner", "sector", "period", "draw", "value", "unit"]

#: Dimensions folded into ``partner`` in the export, as in :func:`critmin.results.dataset.to_long`.
_PARTNER_ALIASES = ("source", "supplier")

#: Key of the cube description in the Parquet schema metadata.
_META_KEY = b"critmin.cube"

#: Largest integer a float32 holds exactly; integer variables beyond it are written as float64.
_FLOAT32_EXACT = 2**24

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id VARCHAR PRIMARY KEY,
        kind VARCHAR NOT NULL,
        scenario_name VARCHAR NOT NULL,
        scenario_hash VARCHAR NOT NULL,
        scenario_yaml VARCHAR NOT NULL,
        data_version VARCHAR NOT NULL,
        code_version VARCHAR NOT NULL,
        seed BIGINT NOT NULL,
        n_draws INTEGER NOT NULL,
        sampler VARCHAR NOT NULL,
        chunk_size INTEGER,
        created TIMESTAMP NOT NULL,
        finished TIMESTAMP,
        status VARCHAR NOT NULL,
        wall_time_s DOUBLE NOT NULL DEFAULT 0,
        draw_columns VARCHAR,
        host VARCHAR,
        pid INTEGER
    )""",
    """CREATE TABLE IF NOT EXISTS draws (
        run_id VARCHAR NOT NULL,
        draw INTEGER NOT NULL,
        path VARCHAR NOT NULL,
        value_num DOUBLE,
        value_text VARCHAR,
        value_type VARCHAR
    )""",
    """CREATE TABLE IF NOT EXISTS metrics (
        run_id VARCHAR NOT NULL,
        chunk INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        draw INTEGER NOT NULL,
        metric VARCHAR NOT NULL,
        mineral VARCHAR,
        region VARCHAR,
        period VARCHAR,
        value DOUBLE,
        unit VARCHAR
    )""",
    """CREATE TABLE IF NOT EXISTS chunks (
        run_id VARCHAR NOT NULL,
        chunk INTEGER NOT NULL,
        draws INTEGER[] NOT NULL,
        parquet VARCHAR NOT NULL,
        rows BIGINT NOT NULL,
        written_at TIMESTAMP NOT NULL,
        PRIMARY KEY (run_id, chunk)
    )""",
]

_RUN_FIELDS = (
    "run_id",
    "kind",
    "scenario_name",
    "scenario_hash",
    "scenario_yaml",
    "data_version",
    "code_version",
    "seed",
    "n_draws",
    "sampler",
    "chunk_size",
    "created",
    "finished",
    "status",
    "wall_time_s",
    "draw_columns",
    "host",
    "pid",
)


def default_store_path() -> Path:
    """Where the store lives unless told: ``$CRITMIN_STORE``, else ``~/.critmin/store.duckdb``.

    Returns
    -------
    Path
        The database file (it need not exist yet).
    """
    env = os.environ.get("CRITMIN_STORE")
    return Path(env).expanduser() if env else Path.home() / ".critmin" / "store.duckdb"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Store:
    """Runs, their inputs and their results in an embedded DuckDB database plus Parquet cubes.

    Parameters
    ----------
    path
        The database file; ``None`` for :func:`default_store_path`. Its folder is created on the first write.
    lock_timeout_s
        How long to wait for another process that holds the database file before giving up.

    Notes
    -----
    Run ids are accepted as unique prefixes by the reading methods (``get_run("r-2026")``); the writing
    methods need the full id. Unknown or ambiguous ids raise :class:`~critmin.core.errors.CritminError`.
    """

    def __init__(self, path: str | Path | None = None, *, lock_timeout_s: float = 30.0) -> None:
        self.path = Path(path).expanduser() if path is not None else default_store_path()
        self.parts = self.path.with_name(self.path.name + ".parts")
        self.lock_timeout_s = lock_timeout_s
        self._con: duckdb.DuckDBPyConnection | None = None
        self._depth = 0
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # -- connections -------------------------------------------------------------------------------------------

    def __enter__(self) -> Store:
        with self._lock:
            if self._depth == 0:
                self._con = self._open()
            self._depth += 1
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._con is not None:
                self._con.close()
                self._con = None

    def _open(self) -> duckdb.DuckDBPyConnection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_s
        wait = 0.01
        while True:
            try:
                con = duckdb.connect(str(self.path))
                break
            except duckdb.IOException as err:
                if "lock" not in str(err).lower() or time.monotonic() > deadline:
                    raise CritminError(f"cannot open the store {self.path}: {err}") from err
                time.sleep(wait)
                wait = min(wait * 2, 0.5)
        try:
            self._ensure_schema(con)
        except BaseException:
            con.close()
            raise
        return con

    def _ensure_schema(self, con: duckdb.DuckDBPyConnection) -> None:
        try:
            row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except duckdb.CatalogException:
            tables = con.execute("SELECT count(*) FROM information_schema.tables").fetchone()
            if tables is not None and tables[0]:
                raise CritminError(f"{self.path} is a DuckDB database but not a critmin store") from None
        else:
            found = int(row[0]) if row else None
            if found != SCHEMA_VERSION:
                raise CritminError(
                    f"the store {self.path} has schema version {found}; this critmin reads version "
                    f"{SCHEMA_VERSION} (use a new store file, or the critmin that wrote it)"
                )
            return
        con.execute("BEGIN TRANSACTION")
        for statement in _SCHEMA:
            con.execute(statement)
        con.execute(
            "INSERT INTO meta VALUES ('schema_version', ?), ('created', ?)",
            [str(SCHEMA_VERSION), _utcnow().isoformat(timespec="seconds")],
        )
        con.execute("COMMIT")

    @contextmanager
    def _connect(self, *, write: bool = True) -> Iterator[duckdb.DuckDBPyConnection | None]:
        """A connection for one operation: the held one inside ``with``, else a fresh one closed afterwards.

        With ``write=False`` and no database file yet, yields ``None`` (an empty store) instead of creating it.
        """
        with self._lock:
            if self._con is not None:
                yield self._con
                return
            if not write and not self.path.exists():
                yield None
                return
            con = self._open()
            try:
                yield con
            finally:
                con.close()

    # -- runs --------------------------------------------------------------------------------------------------

    def create_run(
        self,
        *,
        scenario_name: str,
        scenario_hash: str,
        scenario_yaml: str,
        data_version: str,
        code_version: str,
        seed: int,
        n_draws: int,
        sampler: str,
        kind: str = "ensemble",
        chunk_size: int | None = None,
    ) -> str:
        """Register a new run with status ``running``.

        Parameters
        ----------
        scenario_name, scenario_hash, scenario_yaml
            The scenario's name, the hash of its content and the content itself (so the run can be redone).
        data_version, code_version
            Versions of the dataset and of critmin that produce the run.
        seed
            The run's seed (each draw's stream is spawned from it).
        n_draws
            Number of draws; draws are numbered ``0 .. n_draws - 1``.
        sampler
            How the draws were sampled (``lhs``, ``mc``).
        kind
            ``ensemble`` or ``single``.
        chunk_size
            Draws per chunk, recorded so that a resumed run cuts the same chunks.

        Returns
        -------
        str
            A new run id ``r-YYYYMMDD-HHMM-xxxxxx`` (UTC time of creation, then six random hex digits).
        """
        if int(n_draws) < 1:
            raise CritminError(f"a run needs at least one draw, got n_draws={n_draws}")
        now = _utcnow()
        with self._connect() as con:
            assert con is not None
            while True:
                run_id = f"r-{now:%Y%m%d-%H%M}-{secrets.token_hex(3)}"
                if con.execute("SELECT 1 FROM runs WHERE run_id = ?", [run_id]).fetchone() is None:
                    break
            con.execute(
                "INSERT INTO runs (run_id, kind, scenario_name, scenario_hash, scenario_yaml, data_version, "
                "code_version, seed, n_draws, sampler, chunk_size, created, status, wall_time_s, host, pid) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', 0, ?, ?)",
                [
                    run_id,
                    kind,
                    scenario_name,
                    scenario_hash,
                    scenario_yaml,
                    data_version,
                    code_version,
                    int(seed),
                    int(n_draws),
                    sampler,
                    None if chunk_size is None else int(chunk_size),
                    now,
                    socket.gethostname(),
                    os.getpid(),
                ],
            )
        return run_id

    def reopen_run(self, run_id: str) -> None:
        """Set an unfinished run (``running``, ``interrupted``, ``failed``) back to ``running`` to resume it.

        A complete run cannot be reopened.
        """
        with self._connect() as con:
            assert con is not None
            run = self._run_row(con, run_id, exact=True)
            if run["status"] == "complete":
                raise CritminError(f"run {run_id} is complete; a complete run cannot be resumed")
            con.execute(
                "UPDATE runs SET status = 'running', finished = NULL, host = ?, pid = ? WHERE run_id = ?",
                [socket.gethostname(), os.getpid(), run_id],
            )

    def finish_run(self, run_id: str, status: RunStatus, wall_time_s: float) -> None:
        """Mark a run finished.

        Parameters
        ----------
        run_id
            The full run id.
        status
            ``complete`` (refused unless every draw ``0 .. n_draws - 1`` is in exactly one complete chunk whose
            Parquet file exists), ``failed`` or ``interrupted``.
        wall_time_s
            Seconds this session of the run took; added to the run's total, so that a resumed run reports the
            time of all its sessions.
        """
        if status not in FINAL_STATUSES:
            raise CritminError(f"unknown final status {status!r}; one of {', '.join(FINAL_STATUSES)}")
        with self._connect() as con:
            assert con is not None
            run = self._run_row(con, run_id, exact=True)
            if run["status"] == "complete":
                raise CritminError(f"run {run_id} is already complete")
            if status == "complete":
                self._check_complete(con, run)
            con.execute(
                "UPDATE runs SET status = ?, finished = ?, wall_time_s = wall_time_s + ? WHERE run_id = ?",
                [status, _utcnow(), float(wall_time_s), run_id],
            )

    def _check_complete(self, con: duckdb.DuckDBPyConnection, run: dict[str, Any]) -> None:
        run_id, n = run["run_id"], int(run["n_draws"])
        rows = con.execute(
            "SELECT d, count(*) FROM (SELECT unnest(draws) AS d FROM chunks WHERE run_id = ?) GROUP BY d",
            [run_id],
        ).fetchall()
        counts = {int(d): int(c) for d, c in rows}
        missing = [d for d in range(n) if d not in counts]
        doubled = sorted(d for d, c in counts.items() if c > 1)
        outside = sorted(d for d in counts if not 0 <= d < n)
        problems = []
        if missing:
            problems.append(f"{len(missing)} of {n} draws missing (first: {_preview(missing)})")
        if doubled:
            problems.append(f"draws in more than one chunk: {_preview(doubled)}")
        if outside:
            problems.append(f"draws outside 0..{n - 1}: {_preview(outside)}")
        files = con.execute("SELECT parquet FROM chunks WHERE run_id = ? ORDER BY chunk", [run_id]).fetchall()
        lost = [f for (f,) in files if not (self.parts / f).is_file()]
        if lost:
            problems.append(f"cube files missing: {_preview(lost)}")
        if problems:
            raise CritminError(f"run {run_id} cannot be marked complete: " + "; ".join(problems))

    def list_runs(self) -> pd.DataFrame:
        """The run registry, newest first.

        Returns
        -------
        pd.DataFrame
            Columns ``id, kind, scenario, hash, data_version, code_version, seed, sampler, draws, done, created,
            finished, status, wall_time_s`` (``kind``: ``single`` or ``ensemble``; ``done``: draws in complete
            chunks; times in UTC).
        """
        columns = [
            "id",
            "kind",
            "scenario",
            "hash",
            "data_version",
            "code_version",
            "seed",
            "sampler",
            "draws",
            "done",
            "created",
            "finished",
            "status",
            "wall_time_s",
        ]
        with self._connect(write=False) as con:
            if con is None:
                return pd.DataFrame(columns=columns)
            df = con.execute(
                """SELECT r.run_id AS id, r.kind, r.scenario_name AS scenario, r.scenario_hash AS hash, r.data_version,
                          r.code_version, r.seed, r.sampler, r.n_draws AS draws,
                          coalesce(c.done, 0)::INTEGER AS done, r.created, r.finished, r.status, r.wall_time_s
                   FROM runs r
                   LEFT JOIN (SELECT run_id, sum(len(draws)) AS done FROM chunks GROUP BY run_id) c
                     ON c.run_id = r.run_id
                   ORDER BY r.created DESC, r.run_id DESC"""
            ).df()
        return df[columns]

    def resolve(self, run_id: str) -> str:
        """The full id of the run that ``run_id`` names, exactly or as the unique prefix of one id."""
        with self._connect(write=False) as con:
            if con is None:
                raise CritminError(f"no run {run_id!r}: the store {self.path} is empty")
            return str(self._run_row(con, run_id)["run_id"])

    def get_run(self, run_id: str) -> dict[str, Any]:
        """One run's registry entry and progress.

        Returns
        -------
        dict
            The ``runs`` columns (``run_id``, also as ``id``; ``kind, scenario_name, scenario_hash,
            scenario_yaml, data_version, code_version, seed, n_draws, sampler, chunk_size, created, finished,
            status, wall_time_s, host, pid``) plus ``draw_paths`` (the uncertain inputs, in order), ``done``
            (draws in complete chunks) and ``chunks`` (complete chunks).
        """
        with self._connect(write=False) as con:
            if con is None:
                raise CritminError(f"no run {run_id!r}: the store {self.path} is empty")
            run = self._run_row(con, run_id)
            row = con.execute(
                "SELECT count(*), coalesce(sum(len(draws)), 0) FROM chunks WHERE run_id = ?", [run["run_id"]]
            ).fetchone()
        assert row is not None
        columns = run.pop("draw_columns")
        run["draw_paths"] = [c for c in json.loads(columns) if c != "draw"] if columns else []
        run["chunks"], run["done"] = int(row[0]), int(row[1])
        return {"id": run["run_id"], **run}

    def _run_row(self, con: duckdb.DuckDBPyConnection, run_id: str, *, exact: bool = False) -> dict[str, Any]:
        fields = ", ".join(_RUN_FIELDS)
        row = con.execute(f"SELECT {fields} FROM runs WHERE run_id = ?", [run_id]).fetchone()
        if row is None and not exact and run_id:
            matches = con.execute(
                f"SELECT {fields} FROM runs WHERE starts_with(run_id, ?) ORDER BY run_id", [run_id]
            ).fetchall()
            if len(matches) > 1:
                ids = ", ".join(m[0] for m in matches[:5]) + (", ..." if len(matches) > 5 else "")
                raise CritminError(f"run id {run_id!r} is ambiguous in {self.path}: {len(matches)} runs ({ids})")
            row = matches[0] if matches else None
        if row is None:
            raise CritminError(f"no run {run_id!r} in the store {self.path} (see `critmin runs`)")
        return dict(zip(_RUN_FIELDS, row, strict=True))

    # -- draws -------------------------------------------------------------------------------------------------

    def add_draws(self, run_id: str, draws: pd.DataFrame) -> None:
        """Write the table of draws, once, at the start of a run.

        Parameters
        ----------
        run_id
            The full run id.
        draws
            One row per draw: a ``draw`` column first (``0 .. n_draws - 1``, each once), then one column per
            uncertain input path holding its drawn value (float, int, bool, str, date or datetime; missing
            values allowed).

        Notes
        -----
        Stored long: ``draws(run_id, draw, path, value_num, value_text, value_type)``; numbers and booleans in
        ``value_num``, strings in ``value_text``, dates and datetimes as ISO text; ``value_type`` says which, so
        :meth:`load_draws` gives back the same values and column order.
        """
        if draws.columns.size == 0 or draws.columns[0] != "draw":
            raise CritminError("the table of draws needs a 'draw' column first")
        paths = [str(c) for c in draws.columns[1:]]
        if len(set(paths)) != len(paths) or "draw" in paths:
            raise CritminError("the table of draws has duplicate columns")
        with self._connect() as con:
            assert con is not None
            run = self._run_row(con, run_id, exact=True)
            n = int(run["n_draws"])
            numbers = _draw_numbers(draws["draw"], "the table of draws")
            if sorted(numbers) != list(range(n)):
                raise CritminError(f"the table of draws of run {run_id} must hold draws 0..{n - 1} once each")
            if run["draw_columns"] is not None:
                raise CritminError(f"the draws of run {run_id} are already written")
            long = _draws_long(run_id, draws, numbers, paths)
            con.execute("BEGIN TRANSACTION")
            try:
                con.register("critmin_draws", long)
                con.execute(
                    "INSERT INTO draws SELECT run_id, draw, path, value_num, value_text, value_type FROM critmin_draws"
                )
                con.unregister("critmin_draws")
                con.execute("UPDATE runs SET draw_columns = ? WHERE run_id = ?", [json.dumps(["draw", *paths]), run_id])
                con.execute("COMMIT")
            except BaseException:
                _rollback(con)
                raise

    def load_draws(self, run_id: str) -> pd.DataFrame:
        """The table of draws, wide: ``draw`` then one column per uncertain input, one row per draw, by draw.

        A run whose draws were never written gives a table with the ``draw`` column only.
        """
        with self._connect(write=False) as con:
            if con is None:
                raise CritminError(f"no run {run_id!r}: the store {self.path} is empty")
            run = self._run_row(con, run_id)
            long = con.execute(
                "SELECT draw, path, value_num, value_text, value_type FROM draws WHERE run_id = ? ORDER BY draw",
                [run["run_id"]],
            ).df()
        if run["draw_columns"] is None:
            return pd.DataFrame({"draw": pd.Series(dtype="int64")})
        columns = json.loads(run["draw_columns"])
        draw_ids = np.arange(int(run["n_draws"]), dtype=np.int64)
        out: dict[str, Any] = {"draw": draw_ids}
        for path in columns[1:]:
            sub = long[long["path"] == path]
            values: list[Any] = [None] * len(draw_ids)
            for d, num, text, kind in zip(
                sub["draw"].to_numpy(), sub["value_num"], sub["value_text"], sub["value_type"], strict=True
            ):
                values[int(d)] = _decode_value(num, text, kind)
            out[path] = _column(values)
        return pd.DataFrame(out)

    # -- chunks ------------------------------------------------------------------------------------------------

    def write_chunk(
        self, run_id: str, chunk: int, draws: Sequence[int], cube: xr.Dataset, metrics: pd.DataFrame
    ) -> bool:
        """Store one finished chunk of draws, atomically.

        Parameters
        ----------
        run_id
            The full run id.
        chunk
            The chunk's number (the file is ``chunk-XXXXX.parquet``).
        draws
            The chunk's draws; each in ``0 .. n_draws - 1`` and in no other complete chunk.
        cube
            The chunk's results, with a ``draw`` dimension whose labels are ``draws``; variables of numeric or
            boolean type over any of (mineral, stage, region, partner, sector, period, and other labelled
            dimensions). A variable without ``draw`` is stored for every draw of the chunk.
        metrics
            Per-draw headline metrics with columns ``draw, metric, mineral, region, period, value, unit``
            (``period`` empty for a metric over the whole horizon); one row per (draw, metric, mineral,
            region, period).

        Returns
        -------
        bool
            ``True`` if written; ``False`` if this chunk was already complete with the same draws (a retried or
            duplicated task): nothing is written again.

        Raises
        ------
        CritminError
            If the run is complete, a draw is outside the run or already in another complete chunk, or the cube
            or the metrics do not match the draws.

        Notes
        -----
        The cube goes to ``<store>.parts/RUN_ID/chunk-XXXXX.parquet`` through a temporary file and a rename;
        then one transaction inserts the metrics and the ``chunks`` row. A failure before the commit leaves
        at most a Parquet file without a ``chunks`` row, which counts for nothing and is overwritten on retry.
        A run that was ``interrupted`` or ``failed`` is set back to ``running`` by the transaction that
        stores its next chunk (a resumed run).
        """
        chunk = int(chunk)
        if chunk < 0:
            raise CritminError(f"chunk numbers start at 0, got {chunk}")
        numbers = _draw_numbers(pd.Series(list(draws)), f"chunk {chunk}")
        if not numbers:
            raise CritminError(f"chunk {chunk} has no draws")
        table = _encode_cube(cube, numbers, label=f"chunk {chunk}")
        rows = _metric_rows(metrics, set(numbers), chunk)
        with self._connect() as con:
            assert con is not None
            run = self._run_row(con, run_id, exact=True)
            if run["status"] == "complete":
                raise CritminError(f"run {run_id} is complete; it takes no more chunks")
            n = int(run["n_draws"])
            outside = [d for d in numbers if not 0 <= d < n]
            if outside:
                raise CritminError(f"chunk {chunk} of run {run_id} has draws outside 0..{n - 1}: {_preview(outside)}")
            existing = con.execute(
                "SELECT draws FROM chunks WHERE run_id = ? AND chunk = ?", [run_id, chunk]
            ).fetchone()
            if existing is not None:
                if sorted(existing[0]) == sorted(numbers):
                    return False
                raise CritminError(f"chunk {chunk} of run {run_id} is already complete with other draws")
            taken = con.execute(
                "SELECT d FROM (SELECT unnest(draws) AS d FROM chunks WHERE run_id = ?) WHERE list_contains(?, d)",
                [run_id, numbers],
            ).fetchall()
            if taken:
                repeated = _preview(sorted(t[0] for t in taken))
                raise CritminError(f"chunk {chunk} of run {run_id} repeats draws already stored: {repeated}")
            relative = f"{run_id}/chunk-{chunk:05d}.parquet"
            self._write_parquet(table, self.parts / relative)
            self._commit_chunk(con, run_id, chunk, numbers, relative, table.num_rows, rows, run["status"] != "running")
        return True

    def _write_parquet(self, table: pa.Table, target: Path) -> None:
        """Write ``table`` to a temporary file beside ``target``, flush it to disk, then rename it."""
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        try:
            labels = [f.name for f in table.schema if pa.types.is_dictionary(f.type)]
            pq.write_table(table, tmp, compression="zstd", use_dictionary=labels, write_statistics=labels)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def _commit_chunk(
        self,
        con: duckdb.DuckDBPyConnection,
        run_id: str,
        chunk: int,
        draws: list[int],
        relative: str,
        rows: int,
        metrics: pa.Table,
        reopen: bool,
    ) -> None:
        """The chunk's one transaction: its metrics, then its ``chunks`` row (and the status), then commit."""
        con.execute("BEGIN TRANSACTION")
        try:
            if reopen:
                con.execute(
                    "UPDATE runs SET status = 'running', finished = NULL, host = ?, pid = ? WHERE run_id = ?",
                    [socket.gethostname(), os.getpid(), run_id],
                )
            if metrics.num_rows:
                frame = metrics.append_column("run_id", pa.array([run_id] * metrics.num_rows, type=pa.string()))
                frame = frame.append_column("chunk", pa.array([chunk] * metrics.num_rows, type=pa.int32()))
                con.register("critmin_metrics", frame)
                con.execute(
                    "INSERT INTO metrics SELECT run_id, chunk, seq, draw, metric, mineral, region, period, value, "
                    "unit FROM critmin_metrics"
                )
                con.unregister("critmin_metrics")
            self._insert_chunk_row(con, run_id, chunk, draws, relative, rows)
            con.execute("COMMIT")
        except BaseException:
            _rollback(con)
            raise

    def _insert_chunk_row(
        self, con: duckdb.DuckDBPyConnection, run_id: str, chunk: int, draws: list[int], relative: str, rows: int
    ) -> None:
        con.execute(
            "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?)", [run_id, chunk, sorted(draws), relative, rows, _utcnow()]
        )

    def completed_draws(self, run_id: str) -> set[int]:
        """Draws in complete chunks; a resumed run computes ``set(range(n_draws)) - completed_draws(run_id)``."""
        with self._connect(write=False) as con:
            if con is None:
                raise CritminError(f"no run {run_id!r}: the store {self.path} is empty")
            run = self._run_row(con, run_id)
            rows = con.execute("SELECT unnest(draws) FROM chunks WHERE run_id = ?", [run["run_id"]]).fetchall()
        return {int(r[0]) for r in rows}

    def cube_files(self, run_id: str) -> list[Path]:
        """The Parquet files of the run's complete chunks, by chunk number (for reading them with SQL).

        A file in the run's folder that is not listed belongs to a chunk whose write did not commit.
        """
        with self._connect(write=False) as con:
            if con is None:
                raise CritminError(f"no run {run_id!r}: the store {self.path} is empty")
            run = self._run_row(con, run_id)
            chunks = self._chunks(con, run["run_id"])
        return [self.parts / rel for _, _, rel in chunks]

    def _chunks(self, con: duckdb.DuckDBPyConnection, run_id: str) -> list[tuple[int, list[int], str]]:
        rows = con.execute("SELECT chunk, draws, parquet FROM chunks WHERE run_id = ? ORDER BY chunk", [run_id])
        return [(int(c), [int(d) for d in ds], str(p)) for c, ds, p in rows.fetchall()]

    # -- results -----------------------------------------------------------------------------------------------

    def load_metrics(self, run_id: str) -> pd.DataFrame:
        """Per-draw headline metrics of the complete chunks, by draw (each draw's rows in the order written).

        Returns
        -------
        pd.DataFrame
            Columns ``draw, metric, mineral, region, period, value, unit``; the labels are categoricals
            (categories in order of first appearance). ``period`` is an integer year (nullable ``Int64`` where
            some rows have none) when every label is a year, else a categorical of labels (``"2025-Q2"``);
            a value stored as NaN comes back as NaN.
        """
        with self._connect(write=False) as con:
            if con is None:
                raise CritminError(f"no run {run_id!r}: the store {self.path} is empty")
            run = self._run_row(con, run_id)
            counts = con.execute(
                "SELECT count(*) FILTER (WHERE period IS NOT NULL AND TRY_CAST(period AS BIGINT) IS NULL), "
                "count(*) FILTER (WHERE period IS NULL) FROM metrics WHERE run_id = ?",
                [run["run_id"]],
            ).fetchone()
            assert counts is not None
            years = counts[0] == 0
            period = "CAST(period AS BIGINT)" if years else "period"
            query = (
                f"SELECT draw::BIGINT AS draw, metric, mineral, region, {period} AS period, value, unit "
                "FROM metrics WHERE run_id = ? ORDER BY draw, seq"
            )
            table = _arrow_query(con, query, [run["run_id"]])
        # Labels repeat millions of times in a large run: categoricals keep them small and fast to group.
        for name in ("metric", "mineral", "region", "unit", *(() if years else ("period",))):
            i = table.schema.get_field_index(name)
            table = table.set_column(i, name, pc.dictionary_encode(table[name]))
        df = table.to_pandas()
        if years:
            df["period"] = df["period"].astype("Int64" if counts[1] else "int64")
        return df

    def load_cube(self, run_id: str, variables: Sequence[str] | None = None) -> xr.Dataset:
        """The run's result cube over its complete chunks, with ``draw`` as a dimension, sorted by draw.

        Parameters
        ----------
        run_id
            A run id or its unique prefix.
        variables
            Only these variables (default: all).

        Returns
        -------
        xr.Dataset
            The variables with their dimensions, units and attributes as written. Values were stored as
            float32 (integers beyond 2**24 as float64): float32 variables come back exactly, float64 ones at
            float32 precision (relative error below 6e-8), integers and booleans exactly.
        """
        with self._connect(write=False) as con:
            if con is None:
                raise CritminError(f"no run {run_id!r}: the store {self.path} is empty")
            run = self._run_row(con, run_id)
            chunks = self._chunks(con, run["run_id"])
        if not chunks:
            raise CritminError(f"run {run['run_id']} has no complete chunk yet: no cube to load")
        return _decode_chunks([(draws, self.parts / rel) for _, draws, rel in chunks], variables)

    def export(
        self, run_id: str, fmt: Literal["parquet", "csv"], path: str | Path, *, cube: bool = True
    ) -> dict[str, int]:
        """Export a run to a new folder ``path``: ``run.json``, then ``draws``, ``metrics``, ``risk`` and
        ``cube`` tables as ``.parquet`` or ``.csv`` files.

        Parameters
        ----------
        run_id
            A run id or its unique prefix.
        fmt
            ``parquet`` or ``csv``.
        path
            The folder to create; it must not exist, or be an empty folder.
        cube
            Whether to write the cube (it is by far the largest table).

        Returns
        -------
        dict
            Rows written per table.

        Notes
        -----
        ``draws`` is wide (one row per draw), ``metrics`` as in :meth:`load_metrics`, ``risk`` the table of
        :func:`critmin.results.risk.risk_table`, and ``cube`` the tidy long table ``variable, mineral, stage,
        region, partner, sector, period, draw, value, unit`` of ``critmin run --export`` with a ``draw``
        column: missing values and zero trade flows are left out, other zeros kept; dimensions outside those
        columns are folded into ``partner`` (``source``, ``supplier``, a bloc) or into the variable name
        (``name.label``). The folder is written under a temporary name and renamed when complete.
        """
        from critmin.results.risk import risk_table

        if fmt not in ("parquet", "csv"):
            raise CritminError(f"unknown export format {fmt!r}: parquet or csv")
        target = Path(path).expanduser()
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise CritminError(f"{target} exists and is not an empty folder; export to a new path")
        if not self.path.exists():
            raise CritminError(f"no run {run_id!r}: the store {self.path} is empty")
        with self:  # one connection for the reads; released before the files are written
            run = self.get_run(run_id)
            rid = run["run_id"]
            draws = self.load_draws(rid)
            metrics = self.load_metrics(rid)
            with self._connect(write=False) as con:
                assert con is not None
                chunks = self._chunks(con, rid)
        tmp = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")
        tmp.mkdir(parents=True)
        counts: dict[str, int] = {}
        try:
            _write_frame(draws, tmp / f"draws.{fmt}", fmt)
            counts["draws"] = len(draws)
            _write_frame(metrics, tmp / f"metrics.{fmt}", fmt)
            counts["metrics"] = len(metrics)
            risk = risk_table(draws, metrics) if len(metrics) else pd.DataFrame()
            _write_frame(risk, tmp / f"risk.{fmt}", fmt)
            counts["risk"] = len(risk)
            if cube:
                counts["cube"] = _export_cube([(d, self.parts / rel) for _, d, rel in chunks], tmp / f"cube.{fmt}", fmt)
            info = {key: (value.isoformat() if isinstance(value, dt.datetime) else value) for key, value in run.items()}
            info["export"] = {
                "format": fmt,
                "tables": {name: f"{name}.{fmt}" for name in counts},
                "rows": counts,
                "cube_columns": EXPORT_COLUMNS,
                "exported": _utcnow().isoformat(timespec="seconds"),
            }
            (tmp / "run.json").write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
            if target.exists():
                target.rmdir()
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return counts


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back the open transaction; an error doing so must not hide the one that caused it."""
    with suppress(duckdb.Error):
        con.execute("ROLLBACK")


def _arrow_query(con: duckdb.DuckDBPyConnection, query: str, params: list[Any]) -> pa.Table:
    """A query's result as an Arrow table (``to_arrow_table`` in DuckDB 2, ``fetch_arrow_table`` before)."""
    cursor = con.cursor()  # its own result, whatever ``con`` has pending
    try:
        relation = cursor.sql(query, params=params)
        fetch = getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table
        table = fetch()
    finally:
        cursor.close()
    assert isinstance(table, pa.Table)
    return table


# -- helpers: draws ---------------------------------------------------------------------------------------------


def _preview(items: Sequence[Any], n: int = 5) -> str:
    shown = ", ".join(str(i) for i in list(items)[:n])
    return shown + (f", ... ({len(items)} in all)" if len(items) > n else "")


def _draw_numbers(values: pd.Series, where: str, *, unique: bool = True) -> list[int]:
    """Draw numbers as Python ints, refusing missing and non-integer numbers (and repeats if ``unique``)."""
    if values.isna().any():
        raise CritminError(f"{where}: a draw number is missing")
    try:
        numbers = [int(v) for v in values]
        integral = all(float(v) == n for v, n in zip(values, numbers, strict=True))
    except (TypeError, ValueError) as err:
        raise CritminError(f"{where}: draw numbers must be integers") from err
    if not integral:
        raise CritminError(f"{where}: draw numbers must be integers")
    if unique and len(set(numbers)) != len(numbers):
        raise CritminError(f"{where}: repeated draw numbers")
    return numbers


def _encode_value(value: Any) -> tuple[float | None, str | None, str | None]:
    if value is None or value is pd.NaT or (isinstance(value, float | np.floating) and math.isnan(value)):
        return None, None, None
    if isinstance(value, bool | np.bool_):
        return float(value), None, "bool"
    if isinstance(value, int | np.integer):
        return float(value), None, "int"
    if isinstance(value, float | np.floating):
        return float(value), None, "float"
    if isinstance(value, pd.Timestamp | dt.datetime | np.datetime64):
        return None, pd.Timestamp(value).isoformat(), "datetime"
    if isinstance(value, dt.date):
        return None, value.isoformat(), "date"
    if isinstance(value, str):
        return None, value, "str"
    raise CritminError(f"a drawn value of type {type(value).__name__} cannot be stored: {value!r}")


def _decode_value(num: Any, text: Any, kind: Any) -> Any:
    if kind is None or (isinstance(kind, float) and math.isnan(kind)):
        return None
    if kind == "float":
        return float(num)
    if kind == "int":
        return int(num)
    if kind == "bool":
        return bool(num)
    if kind == "date":
        return dt.date.fromisoformat(text)
    if kind == "datetime":
        return pd.Timestamp(text)
    return str(text)


def _draws_long(run_id: str, draws: pd.DataFrame, numbers: list[int], paths: list[str]) -> pa.Table:
    draw_col, path_col, num_col, text_col, type_col = [], [], [], [], []
    for j, path in enumerate(paths):
        for d, value in zip(numbers, draws.iloc[:, j + 1].tolist(), strict=True):
            num, text, kind = _encode_value(value)
            draw_col.append(d)
            path_col.append(path)
            num_col.append(num)
            text_col.append(text)
            type_col.append(kind)
    return pa.table(
        {
            "run_id": pa.array([run_id] * len(draw_col), type=pa.string()),
            "draw": pa.array(draw_col, type=pa.int32()),
            "path": pa.array(path_col, type=pa.string()),
            "value_num": pa.array(num_col, type=pa.float64()),
            "value_text": pa.array(text_col, type=pa.string()),
            "value_type": pa.array(type_col, type=pa.string()),
        }
    )


def _column(values: list[Any]) -> pd.Series:
    """A column from decoded values: numbers as int64 or float64, booleans as bool, others as they come."""
    kinds = {type(v) for v in values if v is not None}
    missing = any(v is None for v in values)
    if kinds == {int} and not missing:
        return pd.Series(values, dtype="int64")
    if kinds and kinds <= {int, float}:
        return pd.Series([np.nan if v is None else float(v) for v in values], dtype="float64")
    if kinds == {bool} and not missing:
        return pd.Series(values, dtype="bool")
    if kinds == {str}:
        return pd.Series(values)
    return pd.Series(values, dtype=object)


# -- helpers: metrics -------------------------------------------------------------------------------------------


def _metric_rows(metrics: pd.DataFrame, draws: set[int], chunk: int) -> pa.Table:
    """Check the chunk's metrics and give them the store's column types (labels and period as text)."""
    where = f"metrics of chunk {chunk}"
    columns = list(metrics.columns)
    missing = [c for c in METRIC_COLUMNS if c not in columns]
    extra = [c for c in columns if c not in METRIC_COLUMNS]
    if missing or extra:
        raise CritminError(
            f"{where} need the columns {', '.join(METRIC_COLUMNS)}"
            + (f"; missing {', '.join(map(str, missing))}" if missing else "")
            + (f"; unexpected {', '.join(map(str, extra))}" if extra else "")
        )
    try:
        values = pd.to_numeric(metrics["value"], errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as err:
        raise CritminError(f"{where}: values must be numbers ({err})") from err
    draw = _integers(metrics["draw"], where)
    # Labels repeat: dictionary-encoded, they are cheap to check and to insert.
    labels = {
        "metric": _text_array(metrics["metric"]),
        "mineral": _text_array(metrics["mineral"]),
        "region": _text_array(metrics["region"]),
        "period": _period_array(metrics["period"], where),
        "unit": _text_array(metrics["unit"]),
    }
    encoded = {k: pc.dictionary_encode(v) for k, v in labels.items()}
    if labels["metric"].null_count:
        raise CritminError(f"{where}: a metric name is missing")
    stray = sorted(set(np.unique(draw).tolist()) - draws)
    if stray:
        raise CritminError(f"{where} name draws outside the chunk: {_preview(stray)}")
    # One integer per row from the draw and the label codes (a row repeats when its integer does).
    names = ("metric", "mineral", "region", "period")
    codes = [pc.fill_null(encoded[k].indices, -1).to_numpy(zero_copy_only=False).astype(np.int64) + 1 for k in names]
    offset = int(draw.min(initial=0))
    sizes = [int(draw.max(initial=0)) - offset + 1, *(len(encoded[k].dictionary) + 1 for k in names)]
    if math.prod(sizes) < 2**62:
        key: np.ndarray = np.asarray(draw, dtype=np.int64) - offset
        for size, code in zip(sizes[1:], codes, strict=True):
            key = key * size + code
    else:
        frame = pd.DataFrame({"draw": draw, **dict(zip(names, codes, strict=True))})
        key = frame.groupby([*names, "draw"]).ngroup().to_numpy(dtype=np.int64)
    ordered = np.sort(key)
    repeats = np.flatnonzero(ordered[1:] == ordered[:-1])
    if repeats.size:
        i = int(np.flatnonzero(key == ordered[repeats[0]])[0])
        first = [int(draw[i]), *(labels[k][i].as_py() for k in ("metric", "mineral", "region", "period"))]
        raise CritminError(f"{where} repeat a row (draw, metric, mineral, region, period): {first}")
    return pa.table(
        {
            "seq": pa.array(np.arange(len(metrics), dtype=np.int32)),
            "draw": pa.array(draw.astype(np.int32)),
            **{k: encoded[k] for k in ("metric", "mineral", "region", "period")},
            "value": pa.array(values, type=pa.float64()),
            "unit": encoded["unit"],
        }
    )


def _integers(values: pd.Series, where: str) -> np.ndarray:
    """Integer draw numbers, refusing missing and fractional ones."""
    try:
        numbers = pd.to_numeric(values, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as err:
        raise CritminError(f"{where}: draw numbers must be integers") from err
    if np.isnan(numbers).any():
        raise CritminError(f"{where}: a draw number is missing")
    if (numbers != np.floor(numbers)).any():
        raise CritminError(f"{where}: draw numbers must be integers")
    return numbers.astype(np.int64)


def _text_array(values: pd.Series) -> pa.Array:
    """Labels as an Arrow string array (missing as null), without a Python loop where the type allows."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    try:
        array = pa.array(values, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if _missing(v) else str(v) for v in values], type=pa.string())
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def _period_array(values: pd.Series, where: str) -> pa.Array:
    """Periods as text: years as ``"2030"`` (also from ``2030.0``), labels as given, none (or "") as null."""
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind in ("integer", "floating", "mixed-integer-float", "decimal"):
        numbers = pd.to_numeric(values).to_numpy(dtype=np.float64, na_value=np.nan)
        present = ~np.isnan(numbers)
        if (numbers[present] != np.floor(numbers[present])).any():
            raise CritminError(f"{where}: a period must be a year or a label")
        years = pa.array(np.where(present, numbers, 0).astype(np.int64), mask=~present)
        return pc.cast(years, pa.string())
    if kind in ("string", "empty"):
        text = _text_array(values)
    else:
        text = pa.array([None if _missing(v) else _year_text(v, where) for v in values], type=pa.string())
    empty = pc.fill_null(pc.equal(text, ""), False)
    return pc.if_else(empty, pa.scalar(None, pa.string()), text)


def _year_text(value: Any, where: str) -> str:
    if isinstance(value, float | np.floating):
        if not float(value).is_integer():
            raise CritminError(f"{where}: a period must be a year or a label, got {value!r}")
        return str(int(value))
    return str(value)


# -- helpers: cubes ---------------------------------------------------------------------------------------------

#: Which cells of a variable become rows: ``sparse`` (the chunk files: cells present in some draw of the chunk
#: and not zero in this draw, so a missing value inside the support is a NaN row), ``present`` (every value
#: that is not missing) and ``nonzero`` (values neither missing nor zero).
KeepRule = Literal["sparse", "present", "nonzero"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _coord_meta(values: np.ndarray) -> dict[str, Any]:
    if values.dtype.kind == "M":
        return {"dtype": str(values.dtype), "values": [str(v) for v in values]}
    return {"dtype": str(values.dtype), "values": _jsonable(values.tolist())}


def _coord_values(meta: dict[str, Any]) -> np.ndarray:
    return np.array(meta["values"], dtype=np.dtype(meta["dtype"]))


def _labels(values: np.ndarray, dim: str, where: str) -> list[str]:
    labels = [str(v) for v in values]
    if len(set(labels)) != len(labels):
        raise CritminError(f"{where}: the labels of dimension {dim!r} are not unique as text: {labels}")
    return labels


def _dict_column(positions: np.ndarray | None, labels: list[str], n: int) -> pa.DictionaryArray:
    dictionary = pa.array(labels, type=pa.string())
    if positions is None:
        return pa.DictionaryArray.from_arrays(pa.nulls(n, type=pa.int32()), dictionary)
    return pa.DictionaryArray.from_arrays(pa.array(np.asarray(positions, dtype=np.int32)), dictionary)


def _tidy(
    cube: xr.Dataset, dims: list[str], keep: dict[str, KeepRule], where: str
) -> tuple[list[pa.Table], dict[str, Any]]:
    """The long rows of ``cube`` (one table per variable, cells in C order, draws innermost) and its description.

    The description holds the coordinates, each variable's dimensions, type and attributes, and its
    *support*: the cells present (not missing) in at least one draw of the cube.
    """
    coords = {
        str(d): np.asarray(cube[d].values) if d in cube.coords else np.arange(cube.sizes[d])
        for d in cube.dims
        if d != "draw"
    }
    labels = {d: _labels(v, d, where) for d, v in coords.items()}
    draw_labels = np.asarray(cube["draw"].values, dtype=np.int64)
    n_draws = len(draw_labels)
    tables: list[pa.Table] = []
    variables: dict[str, Any] = {}
    for name in map(str, cube.data_vars):
        da = cube[name]
        if da.dtype.kind not in "biuf":
            raise CritminError(f"{where}: variable {name!r} has type {da.dtype}; the store keeps numbers only")
        if "draw" not in da.dims:
            da = da.expand_dims(draw=draw_labels)
        other = [str(d) for d in da.dims if d != "draw"]
        shape = tuple(da.sizes[d] for d in other)
        flat = np.asarray(da.transpose(*other, "draw").values, dtype=np.float64).reshape(-1, n_draws)
        present = ~np.isnan(flat)
        support: np.ndarray = np.asarray(present.any(axis=1))
        rule = keep[name]
        if rule == "sparse":
            mask = support[:, None] & (flat != 0)
        elif rule == "present":
            mask = present
        else:
            mask = present & (flat != 0)
        cell, draw_pos = np.nonzero(mask)
        values = flat[cell, draw_pos]
        by_dim = dict(zip(other, np.unravel_index(cell, shape), strict=True)) if shape else {}
        n = len(cell)
        columns: dict[str, pa.Array] = {"variable": _dict_column(np.zeros(n), [name], n)}
        for d in dims:
            columns[d] = _dict_column(by_dim.get(d), labels.get(d, []), n)
        columns["draw"] = pa.array(draw_labels[draw_pos].astype(np.int32))
        columns["value"] = pa.array(values, type=pa.float64())
        columns["unit"] = _dict_column(np.zeros(n), [str(da.attrs.get("unit", ""))], n)
        tables.append(pa.table(columns))
        finite = values[np.isfinite(values)]
        biggest = float(np.abs(finite).max()) if finite.size else 0.0
        integer = da.dtype.kind in "biu"
        variables[name] = {
            "dims": [str(d) for d in da.dims],
            "dtype": str(da.dtype),
            "attrs": _jsonable(dict(da.attrs)),
            "support": base64.b64encode(np.packbits(support).tobytes()).decode("ascii"),
            "needs_float64": bool(biggest > (_FLOAT32_EXACT if integer else 3.0e38)),
        }
    description = {
        "schema_version": SCHEMA_VERSION,
        "coords": {d: _coord_meta(v) for d, v in coords.items()},
        "variables": variables,
        "attrs": _jsonable(dict(cube.attrs)),
    }
    return tables, description


def _check_cube(cube: xr.Dataset, draws: list[int], where: str) -> None:
    if "draw" not in cube.dims:
        raise CritminError(f"{where}: the cube has no 'draw' dimension")
    if not cube.data_vars:
        raise CritminError(f"{where}: the cube has no variables")
    labels = np.asarray(cube["draw"].values) if "draw" in cube.coords else np.array([], dtype=float)
    if labels.dtype.kind not in "iu" or sorted(labels.tolist()) != sorted(draws):
        raise CritminError(f"{where}: the cube's draw labels {_preview(labels.tolist())} differ from its draws")


def _long_schema(dims: list[str], value_type: pa.DataType) -> pa.Schema:
    label = pa.dictionary(pa.int32(), pa.string())
    fields = [("variable", label), *[(d, label) for d in dims], ("draw", pa.int32()), ("value", value_type)]
    return pa.schema([*fields, ("unit", label)])


def _encode_cube(cube: xr.Dataset, draws: list[int], *, label: str) -> pa.Table:
    """The chunk file's table: sparse tidy long rows, the rest of the cube in the schema metadata."""
    _check_cube(cube, draws, label)
    extra = sorted(str(d) for d in cube.dims if d != "draw" and d not in CUBE_DIMS)
    dims = [*CUBE_DIMS, *extra]
    tables, description = _tidy(cube, dims, dict.fromkeys(map(str, cube.data_vars), "sparse"), label)
    wide = any(v["needs_float64"] for v in description["variables"].values())
    value_type = pa.float64() if wide else pa.float32()
    table = pa.concat_tables([t.cast(_long_schema(dims, value_type)) for t in tables])
    return table.replace_schema_metadata({_META_KEY: json.dumps(description).encode()})


def _read_description(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CritminError(f"the cube file {path} of a complete chunk is missing")
    metadata = pq.read_schema(path).metadata or {}
    if _META_KEY not in metadata:
        raise CritminError(f"{path} is not a critmin cube file")
    description: dict[str, Any] = json.loads(metadata[_META_KEY])
    if description.get("schema_version") != SCHEMA_VERSION:
        raise CritminError(
            f"{path}: cube layout version {description.get('schema_version')}, expected {SCHEMA_VERSION}"
        )
    return description


def _positions(column: pa.ChunkedArray, labels: list[str], where: Path) -> np.ndarray:
    """Positions of a label column's values among ``labels`` (mapped once per dictionary where encoded)."""
    value_set = pa.array(labels, type=pa.string())
    if column.num_chunks and pa.types.is_dictionary(column.type):
        unified = column.unify_dictionaries()
        mapping = pc.index_in(unified.chunk(0).dictionary.cast(pa.string()), value_set=value_set)
        lookup = np.asarray(pc.fill_null(mapping, -1).to_numpy(zero_copy_only=False), dtype=np.int64)
        indices = [np.asarray(c.indices.to_numpy(zero_copy_only=False), dtype=np.int64) for c in unified.chunks]
        positions = lookup[np.concatenate(indices)] if indices else np.zeros(0, dtype=np.int64)
    else:
        found = pc.index_in(column.cast(pa.string()), value_set=value_set)
        positions = np.asarray(pc.fill_null(found, -1).to_numpy(), dtype=np.int64)
    if (positions < 0).any():
        raise CritminError(f"{where} holds a label outside its coordinates")
    return positions


def _decode_chunks(chunks: list[tuple[list[int], Path]], variables: Sequence[str] | None) -> xr.Dataset:
    """Rebuild the cube from chunk files: zero inside each variable's support, NaN outside, then the rows."""
    descriptions = [_read_description(path) for _, path in chunks]
    first = descriptions[0]
    for (_, path), desc in zip(chunks, descriptions, strict=True):
        if desc["coords"] != first["coords"]:
            raise CritminError(f"{path}: its coordinates differ from those of the run's first chunk")
        if list(desc["variables"]) != list(first["variables"]):
            raise CritminError(f"{path}: its variables differ from those of the run's first chunk")
    names = list(first["variables"]) if variables is None else [str(v) for v in variables]
    unknown = [v for v in names if v not in first["variables"]]
    if unknown:
        raise CritminError(f"the cube has no variable {', '.join(unknown)}; it has {', '.join(first['variables'])}")
    labels = {d: [str(v) for v in m["values"]] for d, m in first["coords"].items()}
    all_draws = np.array(sorted(d for draws, _ in chunks for d in draws), dtype=np.int64)
    if len(np.unique(all_draws)) != len(all_draws):
        raise CritminError("a draw appears in two chunks of the run")
    layout: dict[str, tuple[list[str], tuple[int, ...], int]] = {}
    full: dict[str, np.ndarray] = {}
    for name in names:
        other = [d for d in first["variables"][name]["dims"] if d != "draw"]
        shape = tuple(len(labels[d]) for d in other)
        cells = int(np.prod(shape)) if shape else 1
        layout[name] = (other, shape, cells)
        full[name] = np.full((cells, len(all_draws)), np.nan)
    for (draws, path), desc in zip(chunks, descriptions, strict=True):
        chunk_draws = np.array(sorted(draws), dtype=np.int64)
        columns = np.searchsorted(all_draws, chunk_draws)
        filters = [("variable", "in", names)] if variables is not None else None
        table = pq.read_table(path, filters=filters)
        variable_column = table["variable"].cast(pa.string()) if table.num_rows else None
        for name in names:
            other, shape, cells = layout[name]
            var = desc["variables"][name]
            if [d for d in var["dims"] if d != "draw"] != other:
                raise CritminError(f"{path}: variable {name!r} has other dimensions than in the first chunk")
            support = np.unpackbits(np.frombuffer(base64.b64decode(var["support"]), dtype=np.uint8), count=cells)
            block = np.full((cells, len(chunk_draws)), np.nan)
            block[support.astype(bool)] = 0.0
            if variable_column is not None:
                rows = table.filter(pc.equal(variable_column, name))
                if rows.num_rows:
                    idx = [_positions(rows[d], labels[d], path) for d in other]
                    cell = np.ravel_multi_index(idx, shape) if shape else np.zeros(rows.num_rows, dtype=np.int64)
                    draw_values = np.asarray(rows["draw"].to_numpy(), dtype=np.int64)
                    draw_pos = np.searchsorted(chunk_draws, draw_values)
                    if (draw_pos >= len(chunk_draws)).any() or (chunk_draws[draw_pos] != draw_values).any():
                        raise CritminError(f"{path} holds draws that its chunk does not list")
                    block[cell, draw_pos] = np.asarray(rows["value"].to_numpy(), dtype=np.float64)
            full[name][:, columns] = block
    out: dict[str, xr.DataArray] = {}
    for name in names:
        other, shape, _ = layout[name]
        spec = first["variables"][name]
        array = full[name].reshape((*shape, len(all_draws)))
        dtype = np.dtype(spec["dtype"])
        if dtype.kind in "biu" and not np.isnan(array).any():
            array = array != 0 if dtype.kind == "b" else np.rint(array).astype(dtype)
        elif dtype.kind == "f" and dtype.itemsize < array.dtype.itemsize:
            array = array.astype(dtype)
        out[name] = xr.DataArray(array, dims=[*other, "draw"], attrs=spec["attrs"]).transpose(*spec["dims"])
    used = {d for da in out.values() for d in da.dims}
    coords = {d: _coord_values(m) for d, m in first["coords"].items() if d in used}
    return xr.Dataset(out, coords={"draw": all_draws, **coords}, attrs=first["attrs"])


def _export_schema() -> pa.Schema:
    label = pa.dictionary(pa.int32(), pa.string())
    fields = [(c, label) for c in EXPORT_COLUMNS[:7]]
    return pa.schema([*fields, ("draw", pa.int32()), ("value", pa.float32()), ("unit", label)])


def _export_cube(chunks: list[tuple[list[int], Path]], target: Path, fmt: str) -> int:
    """Stream the cube, chunk by chunk, to a tidy long CSV or Parquet file; return the number of rows."""
    schema = _export_schema()
    if not chunks:
        if fmt == "csv":
            pd.DataFrame(columns=EXPORT_COLUMNS).to_csv(target, index=False)
        else:
            pq.write_table(schema.empty_table(), target)
        return 0
    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for i, (draws, path) in enumerate(chunks):
            table = _export_table(_decode_chunks([(draws, path)], None), schema)
            if fmt == "csv":
                table.to_pandas().to_csv(target, index=False, header=i == 0, mode="w" if i == 0 else "a")
            else:
                if writer is None:
                    writer = pq.ParquetWriter(target, schema, compression="zstd")
                writer.write_table(table)
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    return rows


def _export_table(ds: xr.Dataset, schema: pa.Schema) -> pa.Table:
    """One chunk's cube as the export's tidy long rows (as ``to_long``: no missing values, no zero flows)."""
    dims = list(EXPORT_COLUMNS[1:7])
    tables = []
    for name in map(str, ds.data_vars):
        da = ds[name]
        renames = {str(d): "partner" for d in da.dims if d in _PARTNER_ALIASES and "partner" not in da.dims}
        if name == "bloc_member" and "bloc" in da.dims and "partner" not in da.dims:
            renames["bloc"] = "partner"
        folded = [str(d) for d in da.dims if d != "draw" and d not in CUBE_DIMS and d not in renames]
        for part in _fold(da.rename(renames), name, folded):
            (var_name,) = map(str, part.data_vars)
            rule: KeepRule = "nonzero" if name == "flow" else "present"
            (table,), _ = _tidy(part, dims, {var_name: rule}, "export")
            tables.append(table.cast(schema))
    return pa.concat_tables(tables) if tables else schema.empty_table()


def _fold(da: xr.DataArray, name: str, folded: list[str]) -> list[xr.Dataset]:
    """Split a variable along dimensions outside the export's columns into ``name.label`` variables."""
    if not folded:
        return [xr.Dataset({name: da})]
    parts = []
    stacked = da.stack(_folded=folded)
    keys = stacked["_folded"].values
    for i in range(stacked.sizes["_folded"]):
        key = keys[i] if isinstance(keys[i], tuple) else (keys[i],)
        piece = stacked.isel(_folded=i).drop_vars(["_folded", *folded], errors="ignore")
        parts.append(xr.Dataset({".".join([name, *map(str, key)]): piece.assign_attrs(da.attrs)}))
    return parts


def _write_frame(df: pd.DataFrame, path: Path, fmt: str) -> None:
    if fmt == "csv":
        df.to_csv(path, index=False)
        return
    frame = df.copy()
    for col in frame.columns:
        if frame[col].dtype == object:
            kinds = {type(v) for v in frame[col] if not _missing(v)}
            if len(kinds) > 1:
                frame[col] = [None if _missing(v) else str(v) for v in frame[col]]
    frame.to_parquet(path, index=False)
