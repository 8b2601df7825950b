"""environment.yml and pyproject.toml declare the same packages; run_all.sh and .ci/run are wired up."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _name(spec: str) -> str:
    return re.split(r"[<>=!\[ ]", spec.strip(), maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(s) for s in py["dependencies"] + py["optional-dependencies"]["dev"]}
    env = (ROOT / "environment.yml").read_text()
    listed = {_name(m) for m in re.findall(r"^\s+- ([A-Za-z][\w.-]*[^\n]*)$", env, flags=re.M)}
    listed -= {"python", "pip", "-e"}
    assert wanted <= listed, f"missing from environment.yml: {sorted(wanted - listed)}"


def test_torch_range_is_declared():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch>=2.1,<2.15" in deps


def test_ci_installs_the_dataset_and_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "apt-get update" in ci and "dataset-fashion-mnist" in ci and "./run_all.sh test" in ci
    assert "./run_all.sh test" in (ROOT / "README.md").read_text()
