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


def field_docs(cls: type) -> dict[str, str]:
    """First line of the docstring under each dataclass field (they are not kept at runtime)."""
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = nxt.value.value.strip().splitlines()[0]
    return docs


def parameters_cell(stage: str, overrides: dict | None = None, profile: str = "smoke") -> str:
    """The ``parameters`` cell of a stage notebook: the profile's values, one comment per line."""
    from lorasoups import pipeline

    st = pipeline.get_stage(stage)
    params = pipeline.stage_parameters(st, pipeline.resolve(profile))
    # an override applies only where the stage declares that parameter
    params.update({k: v for k, v in (overrides or {}).items() if k in params})
    comments = {"profile": "smoke | full: sizes and where results go", "seed": "seed of this run"}
    for sec, key, flat in pipeline.flat_names(st):
        comments[flat] = field_docs(pipeline.SECTIONS[sec]).get(key, f"{sec}.{key}")
    lines = [f"# Parameters (defaults: the CPU {profile} profile)"]
    for name, value in params.items():
        # papermill's parameter parser misreads a comment holding "=" (or ";"): reword those
        comment = comments.get(name, "").replace(" = ", " is ").replace("=", ":").replace(";", ",")
        lines.append(f"{name} = {value!r}  # {comment}".rstrip())
    return "\n".join(lines)
