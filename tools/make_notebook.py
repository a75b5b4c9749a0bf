"""Write a thin notebook from a short cell list (keeps notebooks consistent and diff-friendly).

Used by maintainers when creating a notebook; after that the .ipynb is the source of truth and can
be edited in JupyterLab. Cells: ("md", text) | ("code", text) | ("code", text, [tags]).
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat


def write(path: str | Path, cells: list[tuple]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for cell in cells:
        kind, text, *rest = cell
        if kind == "md":
            c = nbformat.v4.new_markdown_cell(text.strip())
        else:
            c = nbformat.v4.new_code_cell(text.strip())
        if rest:
            c.metadata["tags"] = list(rest[0])
        nb.cells.append(c)
    for i, c in enumerate(nb.cells):
        c.id = f"cell-{i:02d}"
    nbformat.write(nb, str(path))


if __name__ == "__main__":  # pragma: no cover
    sys.exit("import tools.make_notebook and call write(path, cells)")
