"""environment.yml (conda) and pyproject.toml (pip) must name the same dependencies."""
from __future__ import annotations

import re
import tomllib

import yaml

from lorasoups import paths

CONDA_TO_PIP = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip"}


def _name(spec: str) -> str:
    return re.split(r"[<>=!~\[; ]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]
    pip_names = {_name(d) for d in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        pip_names |= {_name(d) for d in extra}

    env = yaml.safe_load((paths.ROOT / "environment.yml").read_text())
    conda, pip_section = set(), []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip_section = dep["pip"]
        else:
            conda.add(CONDA_TO_PIP.get(_name(dep), _name(dep)))
    env_names = (conda - NOT_PACKAGES) | {_name(d) for d in pip_section if not d.startswith("-e")}
    assert env_names == pip_names, {
        "only in environment.yml": sorted(env_names - pip_names),
        "only in pyproject.toml": sorted(pip_names - env_names),
    }
    extras = ",".join(project["optional-dependencies"])
    assert f"-e .[{extras}]" in pip_section  # conda users get the package itself with every extra


def test_ci_runs_the_readme_test_command():
    readme = (paths.ROOT / "README.md").read_text()
    ci = (paths.ROOT / ".ci" / "run").read_text()
    assert "make test" in ci.splitlines()[-1]
    assert "make test" in readme and "make run" in readme
