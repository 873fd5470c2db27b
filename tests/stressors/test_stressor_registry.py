"""The registry: entry points, broken plugins, options, the Albumentations prefix."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import types
import warnings

import pytest

import stressors
from stressors.base import StressorError
from stressors.registry import PluginWarning, Registry

BUILTINS = [
    "blur",
    "brightness",
    "contrast",
    "defocus_blur",
    "gaussian_blur",
    "gaussian_noise",
    "glare",
    "impulse_noise",
    "jpeg_compression",
    "motion_blur",
    "night",
    "occlusion",
    "perspective",
    "pixelate",
    "rotation",
    "saturate",
    "shot_noise",
    "speckle_noise",
    "translation",
    "zoom",
]


def fake_entry_points(monkeypatch, specs):
    """Make importlib.metadata.entry_points(group=...) return entry points built from (name, value) pairs."""
    eps = [importlib.metadata.EntryPoint(name=n, value=v, group="cvaudit.stressors") for n, v in specs]

    def entry_points(**kwargs):
        assert kwargs == {"group": "cvaudit.stressors"}
        return eps

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


@pytest.fixture
def plugin_module(monkeypatch):
    """A third-party module with a working stressor and a module that fails to import."""
    from stressors.base import ImageStressor

    module = types.ModuleType("cvaudit_test_plugin")

    class Invert(ImageStressor):
        name = "invert"
        severity_meaning = {1: "colours inverted"}

        def _apply(self, images, params):
            return 1 - images

    module.Invert = Invert
    module.NotAStressor = object()
    monkeypatch.setitem(sys.modules, "cvaudit_test_plugin", module)
    return module


def test_builtins_are_registered_through_entry_points():
    assert set(BUILTINS) <= set(stressors.available())
    for name in BUILTINS:
        assert stressors.get(name).name == name


def test_a_third_party_plugin_loads_like_a_builtin(monkeypatch, plugin_module):
    fake_entry_points(monkeypatch, [("invert", "cvaudit_test_plugin:Invert")])
    registry = Registry()
    assert registry.available() == ["invert"]
    assert isinstance(registry.get("invert"), plugin_module.Invert)


def test_a_broken_plugin_is_reported_and_skipped(monkeypatch, plugin_module):
    fake_entry_points(
        monkeypatch,
        [
            ("invert", "cvaudit_test_plugin:Invert"),
            ("rain", "cvaudit_no_such_module_xyz:Rain"),
            ("junk", "cvaudit_test_plugin:NotAStressor"),
        ],
    )
    registry = Registry()
    with pytest.warns(PluginWarning) as record:
        assert registry.available() == ["invert"]
    messages = " ".join(str(w.message) for w in record)
    assert "'rain'" in messages and "ModuleNotFoundError" in messages and "cvaudit_no_such_module_xyz" in messages
    assert "'junk'" in messages
    assert set(registry.broken()) == {"rain", "junk"}
    with pytest.raises(StressorError, match="rain.*broken"):
        registry.get("rain")


def test_a_plugin_defined_twice_keeps_the_first(monkeypatch, plugin_module):
    fake_entry_points(
        monkeypatch, [("invert", "cvaudit_test_plugin:Invert"), ("invert", "cvaudit_no_such_module_xyz:Other")]
    )
    registry = Registry()
    with pytest.warns(PluginWarning, match="defined twice"):
        assert registry.available() == ["invert"]


def test_no_entry_points_means_no_stressors(monkeypatch):
    fake_entry_points(monkeypatch, [])
    registry = Registry()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert registry.available() == [] and registry.broken() == {}
    with pytest.raises(StressorError, match="unknown stressor 'night'"):
        registry.get("night")


def test_module_level_broken_lists_nothing_for_a_clean_install():
    assert "night" not in stressors.registry.broken()


def test_unknown_stressor_names_it():
    with pytest.raises(StressorError, match="unknown stressor 'hailstorm'"):
        stressors.get("hailstorm")


@pytest.mark.parametrize("name", [None, "", 3])
def test_bad_name(name):
    with pytest.raises(StressorError):
        stressors.get(name)


def test_unknown_option_names_stressor_and_option():
    with pytest.raises(StressorError, match=r"blur: unknown option 'radius'"):
        stressors.get("blur", radius=3)


@pytest.mark.parametrize(
    ("name", "options", "option"),
    [
        ("blur", {"kind": "zoom"}, "kind"),
        ("occlusion", {"fill": "red"}, "fill"),
        ("glare", {"ghosts": "yes"}, "ghosts"),
        ("night", {"severities": [0, 1]}, "severities"),
        ("night", {"severities": []}, "severities"),
        ("night", {"severities": "1"}, "severities"),
        ("defocus_blur", {"reference_size": -1}, "reference_size"),
    ],
)
def test_bad_option_value_names_stressor_and_option(name, options, option):
    with pytest.raises(StressorError, match=rf"{name}: option '{option}'"):
        stressors.get(name, **options)


def test_options_configure_the_stressor():
    blur = stressors.get("blur", kind="motion", severities=[1, 3, 5])
    assert blur.kind == "motion" and list(blur.severities) == [1, 3, 5]
    assert blur.options == {"kind": "motion", "severities": [1, 3, 5]}
    assert stressors.get("occlusion", fill="noise").fill == "noise"
    assert stressors.get("glare", ghosts=False).ghosts is False


def test_every_builtin_documents_each_severity():
    for name in BUILTINS:
        s = stressors.get(name)
        assert sorted(s.severity_meaning) == [1, 2, 3, 4, 5], name
        assert all(isinstance(v, str) and v for v in s.severity_meaning.values())
        assert type(s).__doc__ and "everity" in type(s).__doc__


def test_albumentations_prefix_returns_the_adapter():
    from stressors.albumentations_adapter import AlbumentationsStressor

    s = stressors.get("albumentations:RandomSunFlare", params={1: {"src_radius": 20}, 5: {"src_radius": 60}})
    assert isinstance(s, AlbumentationsStressor)
    assert s.name == "albumentations:RandomSunFlare" and list(s.severities) == [1, 5]


def test_get_loads_only_the_entry_point_it_needs(monkeypatch, plugin_module):
    fake_entry_points(
        monkeypatch, [("invert", "cvaudit_test_plugin:Invert"), ("rain", "cvaudit_no_such_module_xyz:Rain")]
    )
    registry = Registry()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the broken 'rain' is not loaded, so not reported
        assert isinstance(registry.get("invert"), plugin_module.Invert)
    with pytest.warns(PluginWarning, match="'rain'"), pytest.raises(StressorError, match="rain.*broken"):
        registry.get("rain")  # a name that does not load: everything is loaded and reported


def test_a_run_without_attacks_does_not_import_foolbox():
    code = (
        "import sys, stressors; stressors.get('night'); stressors.get('occlusion');"
        "print('foolbox' in sys.modules, 'stressors.attacks' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_a_plugin_whose_import_raises_its_own_error_is_skipped(monkeypatch, tmp_path):
    """A plugin module's code may raise anything on import (not only ImportError): it is reported, not fatal."""
    (tmp_path / "cvaudit_raising_plugin.py").write_text(
        "class PluginSetupError(Exception):\n    pass\n\nraise PluginSetupError('no GPU kernel for snow')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "cvaudit_raising_plugin", raising=False)
    fake_entry_points(monkeypatch, [("night", "stressors.night:Night"), ("snow", "cvaudit_raising_plugin:Snow")])
    registry = Registry()
    warned = pytest.warns(PluginWarning, match=r"'snow' is broken.*PluginSetupError: no GPU kernel for snow")
    with warned, pytest.raises(StressorError, match="snow.*broken"):
        registry.get("snow")  # the single entry point fails to load: everything is loaded and reported
    assert registry.available() == ["night"] and set(registry.broken()) == {"snow"}
