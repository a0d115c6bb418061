"""Every stage's `deps` in dvc.yaml list exactly the code it really runs: the stage script and,
transitively, every module of `ivfg` it imports (anywhere in a file, function-level imports included).
An edit to any of them must make `dvc repro` rerun the stage (a missing dep leaves stale results marked
up to date), and an edit anywhere else must not."""
from __future__ import annotations

import ast
import copy
import re
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO_ROOT


def module_file(module: str, root: Path) -> Path | None:
    base = root / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Names of the `ivfg` modules a file imports (`from ivfg.a import b` counts ivfg.a.b if it is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name == "ivfg" or name.startswith("ivfg.")}


def code_closure(script: Path, root: Path) -> set[str]:
    """The script and every ivfg file it reaches through imports, as paths relative to `root`."""
    seen, todo = set(), [script]
    while todo:
        path = todo.pop()
        rel = path.relative_to(root).as_posix()
        if rel in seen:
            continue
        seen.add(rel)
        for module in imported_modules(path):
            target = module_file(module, root)
            if target is not None and target.name != "__init__.py":
                todo.append(target)
    return seen


def missing_deps(pipeline: dict, root: Path) -> dict[str, list[str]]:
    """Per stage, the code files its command runs that no dep covers (a dep folder covers what is in it)."""
    missing = {}
    for name, stage in pipeline["stages"].items():
        script = re.search(r"python (stages/\S+\.py)", stage["cmd"])
        if not script:
            continue
        deps = [str(d).rstrip("/") for d in stage.get("deps", [])]
        needed = code_closure(root / script.group(1), root)
        uncovered = sorted(f for f in needed if not any(f == d or f.startswith(d + "/") for d in deps))
        if uncovered:
            missing[name] = uncovered
    return missing


def extra_deps(pipeline: dict, root: Path) -> dict[str, list[str]]:
    """Per stage, code deps (files or folders under ivfg/ and stages/) beyond what its command runs: an
    edit there would rerun the stage, and everything after it, for nothing."""
    extra = {}
    for name, stage in pipeline["stages"].items():
        script = re.search(r"python (stages/\S+\.py)", stage["cmd"])
        if not script:
            continue
        needed = code_closure(root / script.group(1), root)
        code = [str(d).rstrip("/") for d in stage.get("deps", []) if str(d).startswith(("ivfg", "stages"))]
        beyond = sorted(d for d in code if d not in needed)
        if beyond:
            extra[name] = beyond
    return extra


@pytest.fixture(scope="module")
def pipeline() -> dict:
    return yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())


def test_every_stage_declares_the_code_it_runs(pipeline):
    assert missing_deps(pipeline, REPO_ROOT) == {}


def test_no_stage_declares_code_it_does_not_run(pipeline):
    assert extra_deps(pipeline, REPO_ROOT) == {}


def test_the_check_catches_a_removed_dep(pipeline):
    broken = copy.deepcopy(pipeline)
    broken["stages"]["train"]["deps"].remove("ivfg/keys.py")
    assert missing_deps(broken, REPO_ROOT) == {"train": ["ivfg/keys.py"]}
    broken = copy.deepcopy(pipeline)
    broken["stages"]["pretrain_gan"]["deps"].remove("ivfg/gan/training.py")
    assert missing_deps(broken, REPO_ROOT) == {"pretrain_gan": ["ivfg/gan/training.py"]}
    broken = copy.deepcopy(pipeline)
    broken["stages"]["train"]["deps"].append("ivfg/gan/training.py")
    assert extra_deps(broken, REPO_ROOT) == {"train": ["ivfg/gan/training.py"]}


def test_the_closure_follows_function_level_imports():
    # virtual.py imports the registry inside load_virtual_faces.
    assert "ivfg/models/registry.py" in code_closure(REPO_ROOT / "ivfg" / "virtual.py", REPO_ROOT)


def section_class(name: str):
    from ivfg.config import Params

    annotation = Params.model_fields[name].annotation
    return next((a for a in getattr(annotation, "__args__", ()) if a is not type(None)), annotation)


def params_problems(pipeline: dict) -> list[str]:
    """Each stage's params must track every key of a section it lists except the section's `untracked`
    ones (which cannot change a result): a key left out by mistake would leave stale results marked
    up to date; an untracked key listed would rerun a stage, and all after it, for nothing."""
    problems = []
    for name, stage in pipeline["stages"].items():
        listed: dict[str, set[str] | None] = {}
        for entry in stage.get("params", []):
            section, _, key = str(entry).partition(".")
            if not key:
                listed[section] = None
            elif listed.get(section, set()) is not None:
                listed.setdefault(section, set()).add(key)
        for section, keys in listed.items():
            cls = section_class(section)
            if keys is None:
                if cls.untracked:
                    problems.append(f"{name}: lists all of {section}, untracked keys {sorted(cls.untracked)} included")
                continue
            if section == "models":  # a stage reads the models it uses, not all of them
                continue
            wanted = set(cls.model_fields) - cls.untracked
            if keys != wanted:
                problems.append(f"{name}: {section} misses {sorted(wanted - keys)}, lists untracked {sorted(keys - wanted)}")
    return problems


def test_params_deps_are_every_key_but_the_untracked(pipeline):
    assert params_problems(pipeline) == []


def test_the_params_check_catches_a_forgotten_and_an_untracked_key(pipeline):
    broken = copy.deepcopy(pipeline)
    broken["stages"]["pretrain_gan"]["params"].remove("pretrain_gan.r1_gamma")
    broken["stages"]["pretrain_gan"]["params"].append("pretrain_gan.device")
    assert params_problems(broken) == ["pretrain_gan: pretrain_gan misses ['r1_gamma'], lists untracked ['device']"]
    broken = copy.deepcopy(pipeline)
    broken["stages"]["evaluate"]["params"].append("evaluate")
    assert params_problems(broken) == [
        "evaluate: lists all of evaluate, untracked keys ['device'] included"]


def test_the_untracked_keys_are_ones_resume_ignores_too():
    """A key DVC does not track must not be able to change the weights a resumed run continues."""
    from ivfg.gan.training import NOT_SHAPING

    assert section_class("pretrain_gan").untracked <= NOT_SHAPING
