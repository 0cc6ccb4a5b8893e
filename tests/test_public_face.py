"""The plugin API's public face: what plugins may import, what hooks are called, and that the
README's example is the file `make test` installs."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import helpdesk
from helpdesk import hookspecs

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_SOURCES = sorted([*ROOT.glob("plugins/**/*.py"), *ROOT.glob("tests/example_plugin/helpdesk_*/*.py"),
                         *ROOT.glob("tests/example_pager/helpdesk_*/*.py"),
                         *ROOT.glob("tests/example_step/helpdesk_*/*.py")])
ALLOWED_MODULES = {"helpdesk", "helpdesk.records"}


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


@pytest.mark.parametrize("path", PLUGIN_SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_import_only_the_public_face(path):
    for module, names in _imports(path):
        if module.split(".")[0] != "helpdesk":
            continue
        assert module in ALLOWED_MODULES, f"{path.name} imports {module}; use helpdesk or helpdesk.records"
        if module == "helpdesk":
            private = [name for name in names if name not in helpdesk.__all__]
            assert not private, f"{path.name} imports {private} from helpdesk, which are not public"
    source = path.read_text()
    for internal in ("current_app", ".extensions[", "helpdesk_plugins."):
        assert internal not in source, f"{path.name} reaches into the app ({internal}); use ctx"


def test_every_public_name_resolves_and_the_api_has_a_version():
    for name in helpdesk.__all__:
        assert getattr(helpdesk, name) is not None, name
    major, minor = helpdesk.PLUGIN_API.split(".")
    assert major.isdigit() and minor.isdigit()


def test_every_public_name_is_described_in_the_readme():
    """A plugin author reads the public face from the README: a name exported but not described
    there is stable API nobody knows about."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### The public face", 1)[1].split("\n### ", 1)[0]
    missing = [name for name in helpdesk.__all__ if name != "__version__"
               and f"`{name}" not in section and f"`helpdesk.{name}`" not in section]
    assert not missing, f"helpdesk.{missing} are public but not in the README's public face"


def test_every_hook_has_a_family_and_follows_its_naming_rule():
    specs = {name for name, value in vars(hookspecs).items()
             if callable(value) and hasattr(value, "helpdesk_spec")}
    assert specs == set(hookspecs.FAMILIES), "every spec is tagged with its family"
    for name, family in hookspecs.FAMILIES.items():
        prefix = "incident_" if family == "event" else "helpdesk_"
        assert name.startswith(prefix), f"{name}: {family} hooks are named {prefix}…"


def test_every_hook_that_runs_after_start_up_receives_the_context():
    for name, _family in hookspecs.FAMILIES.items():
        if name == "helpdesk_assets":
            continue
        assert "ctx" in inspect.signature(getattr(hookspecs, name)).parameters, name


def test_every_hook_doc_says_when_it_fires_or_what_it_gives():
    for name in hookspecs.FAMILIES:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert len(doc.split()) >= 12, f"{name}: at least a real sentence, please"


def _readme_block(after: str, language: str) -> str:
    section = (ROOT / "README.md").read_text().split(after, 1)[1]
    return section.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_the_readme_example_plugin_is_the_installed_one_line_for_line():
    printed = _readme_block("`helpdesk_example_chat/__init__.py`", "python")
    shipped = (ROOT / "tests/example_plugin/helpdesk_example_chat/__init__.py").read_text()
    assert printed == shipped
    panel = _readme_block("`helpdesk_example_chat/templates/example_chat/panel.html`", "html")
    assert panel == (ROOT / "tests/example_plugin/helpdesk_example_chat/templates/example_chat/panel.html"
                     ).read_text()


def test_the_readme_escalation_step_is_the_installed_one_line_for_line():
    printed = _readme_block("`helpdesk_example_step/__init__.py`", "python")
    assert printed == (ROOT / "tests/example_step/helpdesk_example_step/__init__.py").read_text()


def test_the_example_plugins_tests_run_with_only_the_kit(tmp_path):
    """A plugin author copies the example's tests next to a conftest.py that only enables the
    kit, as "Testing a plugin" says: no fixture may come from this repository's conftest."""
    import os
    import subprocess
    import sys

    (tmp_path / "conftest.py").write_text('pytest_plugins = ["helpdesk.testing"]\n')
    (tmp_path / "test_example_chat.py").write_text(
        (ROOT / "tests/example_plugin/test_example_chat.py").read_text())
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert run.returncode == 0, run.stdout[-3000:]
    assert "passed" in run.stdout and "skipped" not in run.stdout


def test_every_context_member_a_plugin_or_the_readme_uses_is_in_the_public_face():
    """A plugin reaches services through ``ctx``: what the bundled plugins, the examples and the
    README's own code use of it (``ctx.incident_url``, ``ctx.registry.sla_policies`` …) is
    stable API, so the public face must say so, or a third party cannot know it may rely on it."""
    import re

    readme = (ROOT / "README.md").read_text()
    face = readme.split("### The public face", 1)[1].split("\n### ", 1)[0]
    guide = readme.split("## Plugins", 1)[1].split("\n## ", 1)[0]
    sources = [path.read_text() for path in PLUGIN_SOURCES]
    sources += re.findall(r"```python\n(.*?)```", guide, re.S)
    used = {match for text in sources for match in re.findall(r"\bctx\.(\w+(?:\.\w+)?)", text)}
    members = {name.split(".")[0] for name in used}
    missing = sorted(name for name in members if f"ctx.{name}" not in face)
    assert not missing, f"ctx.{missing} are used by plugins but not described in the public face"
    registry = sorted(name.split(".")[1] for name in used if name.startswith("registry."))
    assert all(f"`{kind}`" in face for kind in registry), registry
