#!/usr/bin/env python3
"""Executes every notebook of notebooks/ against a Parquet export and checks that it ran.

Usage: python notebooks/run.py PARQUET_DIR OUT_DIR

PARQUET_DIR holds items.parquet, events.parquet and verdicts.parquet (`ledger export parquet`,
docs/analytics-tables.md); it is handed to the notebooks as LEDGER_PARQUET_DIR. Each
notebooks/*.ipynb runs top to bottom with nbclient in a fresh `python3` kernel (ipykernel of
the Python that runs this script, so run it with the virtual environment's python), 300 s at
most per cell, and its executed copy, outputs included, is written to OUT_DIR under the same
name, also when a cell failed. Prints, for each notebook, the cells run and the PNG images
produced. Exits 1 when a cell raised, timed out or the kernel died (naming the notebook and the
cell), or when a notebook produced no PNG image; 2 on bad arguments.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbclient.util import ensure_async

CELL_TIMEOUT_S = 300
KERNEL = "python3"
NOTEBOOKS = Path(__file__).resolve().parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def first_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip():
            return line.strip()[:100]
    return "(empty)"


def traceback_tail(cell: nbformat.NotebookNode, lines: int = 15) -> str:
    """The last lines of the cell's error output, without terminal colours."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            text = ANSI.sub("", "\n".join(output.get("traceback", []))).rstrip().splitlines()
            return "\n".join("    " + line for line in text[-lines:])
    return "    (no traceback recorded)"


async def execute(nb: nbformat.NotebookNode, cwd: Path) -> tuple[int, str | None]:
    """Runs the notebook's code cells in order, stopping at the first failure.

    Returns the number of code cells run and, on failure, a message naming the cell.
    """
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name=KERNEL,
        allow_errors=False,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.reset_execution_trackers()
    ran = 0
    async with client.async_setup_kernel():
        assert client.kc is not None
        reply = await client.async_wait_for_reply(await ensure_async(client.kc.kernel_info()))
        if reply is not None and "language_info" in reply["content"]:
            nb.metadata["language_info"] = reply["content"]["language_info"]
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            where = f"cell {index} (code cell {ran + 1}, starting {first_line(cell.source)!r})"
            ran += 1
            try:
                await client.async_execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
            except CellExecutionError as error:
                return ran, f"{where} raised {error.ename}: {error.evalue}\n{traceback_tail(cell)}"
            except Exception as error:  # a timeout, a dead kernel, ...
                return ran, f"{where} failed: {type(error).__name__}: {error}"
    return ran, None


def png_count(nb: nbformat.NotebookNode) -> int:
    return sum(
        1
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    )


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    parquet_dir = Path(sys.argv[1]).resolve()
    out_dir = Path(sys.argv[2]).resolve()
    missing = [n for n in ("items", "events", "verdicts") if not (parquet_dir / f"{n}.parquet").is_file()]
    if missing:
        print(f"error: {parquet_dir} lacks {', '.join(m + '.parquet' for m in missing)}", file=sys.stderr)
        return 2
    notebooks = sorted(NOTEBOOKS.glob("*.ipynb"))
    if not notebooks:
        print(f"error: no notebook in {NOTEBOOKS}", file=sys.stderr)
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    # The kernel inherits this process's environment.
    os.environ["LEDGER_PARQUET_DIR"] = str(parquet_dir)
    os.environ.setdefault("MPLBACKEND", "Agg")

    failures = []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        started = time.monotonic()
        ran, error = asyncio.run(execute(nb, NOTEBOOKS))
        seconds = time.monotonic() - started
        nbformat.write(nb, out_dir / path.name)
        images = png_count(nb)
        print(f"{path.name}: {ran} code cells run, {images} PNG images, {seconds:.1f} s")
        if error is not None:
            failures.append(f"{path.name}: {error}\n    (the executed copy with every output: {out_dir / path.name})")
        elif images == 0:
            failures.append(f"{path.name}: ran without error but produced no PNG image")
    if failures:
        print(file=sys.stderr)
        for failure in failures:
            print(f"FAILED {failure}", file=sys.stderr)
        return 1
    print(f"all {len(notebooks)} notebooks ran; executed copies in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
