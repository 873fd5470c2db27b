"""The documentation site (docs/, mkdocs.yml) is true: every example runs, every page is reachable.

``make test`` builds the site with ``mkdocs build --strict`` (broken links, anchors and API
references fail it); these tests run what the build cannot: every fenced block of every page, in
the order of the site's navigation, on a sandbox built from one real demo run (the conventions are
``tests/doc_blocks.py``'s, the README's too), the demo numbers against a fresh demo run, and the
generated configuration reference against the config model.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
import sys
import typing
from pathlib import Path

import pytest
import yaml
from doc_blocks import ROOT, Block, blocks, make_sandbox, not_runnable, run_block

DOCS = ROOT / "docs"
MKDOCS = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
#: Pages added at build time by a hook in docs/hooks/ (not files in docs/).
GENERATED = {"reference/configuration.md"}


def _nav_pages(nav) -> list[str]:
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


NAV = _nav_pages(MKDOCS["nav"])
PAGES = [DOCS / p for p in NAV if p not in GENERATED]
BLOCKS = [b for page in PAGES for b in blocks(page)]


def _hook():
    spec = importlib.util.spec_from_file_location("config_reference_hook", DOCS / "hooks" / "config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_page_is_in_the_navigation():
    on_disk = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert on_disk == set(NAV) - GENERATED, (
        f"pages not in mkdocs.yml's nav: {sorted(on_disk - set(NAV))}; "
        f"nav entries without a page: {sorted(set(NAV) - GENERATED - on_disk)}"
    )
    assert len(NAV) == len(set(NAV)), "a page appears twice in the nav"


def test_the_build_needs_no_network():
    assert MKDOCS["theme"]["font"] is False, "theme.font must be false: Material would load Google Fonts"
    plugins = {next(iter(p)) if isinstance(p, dict) else p for p in MKDOCS["plugins"]}
    assert plugins <= {"search", "mkdocstrings"}, f"plugins that may fetch at build time: {plugins}"
    assert MKDOCS.get("strict") is True


def test_every_block_is_run_or_says_why_not():
    assert BLOCKS, "no code blocks found in docs/"
    problems = not_runnable(BLOCKS)
    assert not problems, "\n".join(problems)


def _config_fields(model, prefix: str = "") -> dict[str, typing.Any]:
    """Every dotted key of the config model (lists of sections as ``key[]``) and its pydantic field,
    walked independently of the hook."""
    from pydantic import BaseModel

    fields = {}
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        sections, is_list = [], typing.get_origin(field.annotation) is list
        for arg in [field.annotation, *typing.get_args(field.annotation)]:
            for sub in [arg, *typing.get_args(arg)]:
                if inspect.isclass(sub) and issubclass(sub, BaseModel):
                    sections.append(sub)
        if sections and is_list:
            key += "[]"
        fields[key] = field
        for sub in sections:
            fields |= _config_fields(sub, f"{key}.")
    return fields


def _config_keys(model) -> set[str]:
    return set(_config_fields(model))


def test_the_configuration_reference_lists_every_key_of_the_config_model():
    from audit.contract.config import AuditConfig

    page = _hook().render()
    listed = set(re.findall(r"^\| `([^`]+)` \|", page, re.M))
    expected = _config_keys(AuditConfig)
    assert listed == expected, f"missing: {sorted(expected - listed)}; not in the model: {sorted(listed - expected)}"
    assert "reference/configuration.md" in NAV


def test_the_configuration_reference_states_types_and_defaults():
    page = _hook().render()
    row = re.search(r"^\| `evaluation.n_bootstrap` \| (.+?) \| (.+?) \| (.+?) \|$", page, re.M)
    assert row and row.groups()[:2] == ("int", "`1000`"), row and row.groups()
    assert row.group(3).startswith("Poisson-bootstrap replicates") and row.group(3).endswith(" Allowed: >= 0."), row
    row = re.search(r"^\| `data.on_bad_image` \| (.+?) \| (.+?) \|", page, re.M)
    assert row and row.groups() == ('"error" \\| "skip"', "`error`"), row and row.groups()
    assert re.search(r"^\| `model` \| section \| required \|", page, re.M)


def test_every_config_key_has_a_description_and_the_reference_shows_it():
    """A new config field without a description (the docstring under it) fails here, not on an empty page cell."""
    from audit.contract.config import AuditConfig

    fields = _config_fields(AuditConfig)
    missing = sorted(key for key, field in fields.items() if not (field.description or "").strip())
    assert not missing, f"config fields without a description (write a docstring under each): {missing}"
    page = _hook().render()
    cells = dict(re.findall(r"^\| `([^`]+)` \| .+? \| .+? \| (.*) \|$", page, re.M))
    for key, field in fields.items():
        words = re.sub(r"`+", "", field.description).split()[:4]  # its opening words, as the page writes them
        assert re.sub(r"`+", "", cells[key]).startswith(" ".join(words)), (key, cells[key])


def test_the_statistics_tables_have_their_blocks():
    """bench_statistics.py and bench_early_stop.py --write-docs replace these blocks of docs/statistics.md."""
    text = (DOCS / "statistics.md").read_text(encoding="utf-8")
    for name in ("intervals", "bootstrap", "calibration", "gaps", "sizes", "sequential", "early-stop"):
        start, end = f"<!-- statistics:{name}:start -->", f"<!-- statistics:{name}:end -->"
        assert text.count(start) == 1 and text.count(end) == 1, name
        assert "|---" in text.split(start, 1)[1].split(end, 1)[0], f"{name}: no table between the markers"


@pytest.fixture(scope="module")
def sandbox(demo_run: Path, tmp_path_factory) -> Path:
    """A folder laid out as the documentation's examples assume, from one real demo run."""
    return make_sandbox(demo_run, tmp_path_factory.mktemp("docs"))


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in BLOCKS if b.skip is None and b.lang != "text"], ids=lambda b: b.name)
def test_docs_block_runs(block: Block, sandbox: Path):
    run_block(block, sandbox)


@pytest.mark.slow
def test_demo_numbers_match_a_demo_run(demo_run: Path):
    """The demo block of docs/getting-started.md is what scripts/update_readme_demo.py writes (to 0.01).

    The demo's weights are shipped and its images byte-identical on every CPU, so its numbers are too
    (to the last printed digit on the kernels measured; 0.01 leaves two attacked samples of 200 room).
    """
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from update_readme_demo import END, PAGE, START, render
    finally:
        sys.path.pop(0)
    fresh = render(json.loads((demo_run / "results.json").read_text()))
    text = (ROOT / PAGE).read_text(encoding="utf-8")
    stored = text.split(START, 1)[1].split(END, 1)[0].strip()
    number = re.compile(r"\d+\.\d+")
    mine, theirs = [float(x) for x in number.findall(stored)], [float(x) for x in number.findall(fresh)]
    assert len(mine) == len(theirs), f"{PAGE}'s demo block has another shape: run scripts/update_readme_demo.py"
    worst = max((abs(a - b) for a, b in zip(mine, theirs)), default=0.0)
    assert worst <= 0.01, (
        f"{PAGE}'s demo numbers differ from a fresh run by {worst:.3f}: run scripts/update_readme_demo.py"
    )


@pytest.mark.slow
def test_the_pytest_example_names_a_config_that_exists(demo_run: Path):
    text = "\n".join(p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *PAGES])
    paths = re.findall(r"--cvaudit-config (\S+)", text)
    assert paths and all(p == "cvaudit-demo/workspace/config.yaml" for p in paths), paths
    assert (demo_run / "workspace" / "config.yaml").is_file()


def test_api_pages_show_docstring_roles_as_their_code():
    spec = importlib.util.spec_from_file_location("docstring_roles_hook", DOCS / "hooks" / "docstring_roles.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    html = (
        "<p>Use :class:<code>PolicyGate</code> or :func:<code>check_gate</code>; ratio 1:2.</p><p>Public surface::</p>"
    )
    assert hook.on_page_content(html) == (
        "<p>Use <code>PolicyGate</code> or <code>check_gate</code>; ratio 1:2.</p><p>Public surface:</p>"
    )
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text().replace("!!python", "python"))
    assert "docs/hooks/docstring_roles.py" in config["hooks"]
