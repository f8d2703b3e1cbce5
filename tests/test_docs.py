"""The documentation site: the reference pages generated from the code say what the code accepts, and
`mkdocs build --strict` fails on a broken link, a page missing from the nav and an undocumented public
function on an API page (the build itself runs in .ci/run)."""

import importlib.util
import logging
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from mobilevit.engine import TASKS, ConfigError, load_config
from mobilevit.engine.recipe import builtin_recipes

REPO = Path(__file__).resolve().parents[1]
MAPPING_KEYS = (
    "model.overrides",
    "model.ssd",
)  # mappings of model fields: their contents are not config keys


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", REPO / "scripts" / "docs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


hooks = _hooks()


def _nested(dotted: str, value):
    out: dict = {}
    node = out
    *parents, leaf = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return out


def _flatten(d: dict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key not in MAPPING_KEYS:
            keys += _flatten(v, f"{key}.")
        else:
            keys.append(key)
    return keys


@pytest.mark.parametrize("task", list(TASKS))
def test_every_documented_config_key_is_accepted_by_the_engine(task):
    keys = hooks.config_keys(TASKS[task].config_cls)
    assert len(keys) > 40
    for k in keys:
        value = "somewhere" if k.key == "data.root" else k.default
        layer = _nested(k.key, value) | ({} if k.key == "task" else {"task": task})
        if k.key != "data.root":
            layer.setdefault("data", {})["root"] = "somewhere"
        cfg = load_config(None, base=layer)
        got = cfg
        for part in k.key.split("."):
            got = getattr(got, part)
        assert got == value, k.key


@pytest.mark.parametrize("task", list(TASKS))
def test_a_key_the_reference_does_not_list_is_refused(task):
    documented = {k.key for k in hooks.config_keys(TASKS[task].config_cls)}
    assert "optim.lr" in documented and "optim.learning_rate" not in documented
    with pytest.raises(ConfigError, match="unknown config key 'optim.learning_rate'"):
        load_config(None, [f"task={task}", "optim.learning_rate=0.1"])


def test_every_key_of_every_shipped_recipe_is_documented():
    documented = {task: {k.key for k in hooks.config_keys(spec.config_cls)} for task, spec in TASKS.items()}
    recipes = builtin_recipes()
    assert len(recipes) > 20
    for name, path in recipes.items():
        data = yaml.safe_load(path.read_text()) or {}
        task = data.get("task", "classification")
        missing = [k for k in _flatten(data) if k not in documented[task]]
        assert not missing, f"{name}: {missing} are not in the config reference"
    studies = sorted((next(iter(recipes.values())).parent / "ablations").glob("*.yaml"))
    assert len(studies) >= 4
    for study in studies:  # each variant changes config keys of its classification recipe
        for variant in yaml.safe_load(study.read_text())["variants"].values():
            missing = [
                k for k in variant if k not in documented["classification"] and not k.startswith(MAPPING_KEYS)
            ]
            assert not missing, f"{study.name}: {missing} are not in the config reference"


def test_every_documented_key_says_what_it_is():
    for task, spec in TASKS.items():
        bare = [k.key for k in hooks.config_keys(spec.config_cls) if not k.comment]
        assert not bare, f"{task}: keys without a comment in engine/config.py: {bare}"


def test_config_reference_page_shows_defaults_and_comments():
    page = hooks.config_page()
    for task in TASKS:
        assert f"## `task: {task}`" in page
    assert "| `optim.lr` | float | `0.002` | peak learning rate" in page
    assert '| `run.out_dir` | str | `"runs/detection"` |' in page  # a task's own default, not the class's


def test_cli_reference_has_every_command():
    from mobilevit.cli import build_parser

    page = hooks.cli_page()
    commands = hooks._subcommands(build_parser())
    assert {"train", "eval", "predict", "export", "convert"} <= set(commands)
    for name in commands:
        assert f"\n## {name}\n" in page and f"usage: mobilevit {name}" in page


def test_weights_reference_has_every_released_tag():
    from mobilevit.weights import WEIGHTS

    page = hooks.weights_page()
    for tag, spec in WEIGHTS.items():
        assert f"| `{tag}` | `{spec.arch}` |" in page
    assert (
        "| `mobilevit_s.cvnets_in1k` | `mobilevit_s` | cvnets | top-1 78.30 | 288 -> 256, bilinear |" in page
    )


@pytest.mark.slow
def test_models_reference_has_every_registered_model():
    from mobilevit.models import list_models

    page = hooks.models_page()
    for name in list_models():
        assert f"| `{name}` |" in page
    assert "| `mobilevit_s` | v1 | 5,578,632 | 2.001 | 78.30 |" in page


def test_the_api_pages_modules_document_every_public_member():
    pages = sorted((REPO / "docs" / "api").glob("*.md"))
    assert len(pages) >= 7
    for page in pages:
        for module in hooks.re.findall(r"^::: ([\w.]+)", page.read_text(), flags=hooks.re.M):
            assert hooks.undocumented(module) == [], page.name


def test_an_undocumented_public_function_is_named(tmp_path, monkeypatch):
    (tmp_path / "half_documented.py").write_text(
        '__all__ = ["good", "bad", "Thing"]\n'
        'def good():\n    """Does good."""\n'
        "def bad():\n    pass\n"
        'class Thing:\n    """A thing."""\n    def method(self):\n        pass\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert hooks.undocumented("half_documented") == ["half_documented.bad", "half_documented.Thing.method"]


@pytest.mark.slow
def test_strict_build_fails_on_a_dead_link_a_missing_page_and_an_undocumented_function(
    tmp_path, monkeypatch, caplog
):
    """Our mkdocs.yml with three faults in a copy of docs/: the build aborts and names each."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config as load_mkdocs_config
    from mkdocs.exceptions import Abort

    docs = tmp_path / "docs"
    shutil.copytree(REPO / "docs", docs)
    index = docs / "index.md"
    index.write_text(index.read_text() + "\n[gone](guides/no_such_page.md)\n")
    (tmp_path / "half_documented.py").write_text('__all__ = ["bad"]\ndef bad():\n    pass\n')
    (docs / "api" / "half.md").write_text("# half\n\n::: half_documented\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    nav = cfg["nav"] + [{"Missing": "guides/missing_from_disk.md"}, {"Half": "api/half.md"}]
    monkeypatch.chdir(REPO)
    config = load_mkdocs_config(
        str(REPO / "mkdocs.yml"), docs_dir=str(docs), site_dir=str(tmp_path / "site"), nav=nav
    )
    caplog.set_level(logging.WARNING)
    with pytest.raises(Abort):
        build(config)
    text = caplog.text
    assert "no_such_page.md" in text
    assert "missing_from_disk.md" in text
    assert "half_documented.bad is public and has no docstring" in text
