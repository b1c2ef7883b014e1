"""Presets: the configs/ files, user preset files (base + overrides), their errors, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scene4d.cli import main
from scene4d.io import load_scene
from scene4d.presets import PRESET_DIR, PresetError, load_preset, preset_names
from scene4d.reconstruct import config_to_json


def test_shipped_presets():
    assert preset_names() == ["dnerf", "dnerf-cpu", "fast", "handheld", "quality"]
    # the named presets are the top-level configs/ folder's files
    assert PRESET_DIR == (Path(__file__).resolve().parents[2] / "configs")
    assert sorted(p.name for p in PRESET_DIR.glob("*.json")) == sorted(f"{n}.json" for n in preset_names())
    fast = load_preset("fast")
    assert (fast.iters, fast.densify.max_gaussians, fast.deformation.kind, fast.deformation.nodes) == (2800, 3500, "nodes", 48)
    assert load_preset("handheld").temporal_opacity and load_preset("dnerf").deformation.resolutions == [64, 128]
    # each call is a fresh config: editing one run's config does not edit the next run's
    cpu = load_preset("dnerf-cpu")  # the fast preset, longer and with more Gaussians
    assert (cpu.iters, cpu.densify.max_gaussians, cpu.densify.refine_stop, cpu.deformation.kind) == (8000, 10000, 6000,
                                                                                                     "nodes")
    assert (cpu.time_curriculum, cpu.downscales) == (fast.time_curriculum, fast.downscales)
    fast.densify.max_gaussians = 7
    assert load_preset("fast").densify.max_gaussians == 3500


def test_a_user_preset_file_overrides_its_base(tmp_path):
    f = tmp_path / "longer.json"
    f.write_text(json.dumps({"base": "fast", "train": {"iters": 6000, "densify": {"max_gaussians": 9000}},
                             "fields": {"nodes": {"nodes": 24}}}))
    cfg, base = load_preset(f), load_preset("fast")
    assert (cfg.iters, cfg.densify.max_gaussians, cfg.deformation.nodes) == (6000, 9000, 24)
    # what the file leaves out is the base's, nested objects included
    assert cfg.densify.refine_stop == base.densify.refine_stop and cfg.deformation.time_resolution == 16
    assert cfg.time_curriculum == base.time_curriculum and cfg.lr_motion == base.lr_motion
    assert load_preset(f, "hexplane").deformation.time_resolution == 10  # other fields: sized as the base does
    # a base chain, with a relative path
    g = tmp_path / "longer_planes.json"
    g.write_text(json.dumps({"base": "longer.json", "field": "hexplane"}))
    cfg = load_preset(g)
    assert cfg.deformation.kind == "hexplane" and cfg.iters == 6000


@pytest.mark.parametrize("content,msg", [
    ({"train": {"itres": 5}}, "unknown key 'train.itres'; did you mean 'train.iters'?"),
    ({"train": {"densify": {"max_gausians": 5}}}, "did you mean 'train.densify.max_gaussians'?"),
    ({"train": {"iters": "5000"}}, "'train.iters' is \"5000\", which is not an integer"),
    ({"train": {"temporal_opacity": 1}}, "'train.temporal_opacity' is 1, which is not true/false"),
    ({"train": {"threads": 1.5}}, "'train.threads' is 1.5, which is not an integer or null"),
    ({"fields": {"hexplane": {"resolutions": 64}}}, "'fields.hexplane.resolutions' is 64, which is not a list of integers"),
    ({"fields": {"nodes": {"bounds_radius": 2.0}}}, "unknown key 'fields.nodes.bounds_radius'"),
    ({"fields": {"splines": {}}}, "unknown key 'fields.splines'"),
    ({"field": "splines"}, "'field' is \"splines\"; choose one of hexplane, mlp, nodes"),
    # values out of range, caught before a run starts (not as a traceback from deep inside it)
    ({"base": "fast", "train": {"iters": -5}}, "'train.iters' is -5; it must be at least 1"),
    ({"base": "fast", "train": {"iters": 0}}, "'train.iters' is 0; it must be at least 1"),
    ({"base": "fast", "train": {"sh_degree": 7}}, "'train.sh_degree' is 7; it must be between 0 and 3"),
    ({"base": "fast", "train": {"lr_means": -1}}, "'train.lr_means' is -1; it must be at least 0"),
    ({"base": "fast", "fields": {"nodes": {"nodes": 0}}}, "'fields.nodes.nodes' is 0; it must be at least 1"),
    ({"base": "dnerf", "fields": {"hexplane": {"resolutions": [1]}}}, "grid sizes of at least 2"),
    ({"base": "fast", "train": {"time_curriculum": 1.5}}, "'train.time_curriculum' is 1.5; it must be between 0 and 1"),
    # a known key at the wrong level says where it belongs
    ({"base": "fast", "iters": 200}, "unknown key 'iters'; it belongs under 'train.iters'"),
    ({"densify": {"max_gaussians": 5}}, "unknown key 'densify'; it belongs under 'train.densify'"),
    ({"train": {"max_gaussians": 5}}, "unknown key 'train.max_gaussians'; it belongs under 'train.densify.max_gaussians'"),
    ({"train": {"densify": {"iters": 5}}}, "it belongs under 'train.iters'"),
    ({"fields": {"nodes": {"iters": 5}}}, "it belongs under 'train.iters'"),
    ({"bsae": "fast"}, "did you mean 'base'?"),
    ({"base": "fsat"}, "unknown preset 'fsat' (did you mean 'fast'?)"),
    ([1, 2], "a preset file holds one JSON object"),
    ({"field": {"nodes": 48}}, "'field' is {\"nodes\": 48}; choose one of hexplane, mlp, nodes"),
])
def test_bad_preset_files_name_the_file_and_key(tmp_path, content, msg):
    f = tmp_path / "mine.json"
    f.write_text(json.dumps(content))
    with pytest.raises(PresetError) as e:
        load_preset(f)
    assert msg in str(e.value), str(e.value)
    assert str(e.value).startswith(str(f)) or "fsat" in msg


def test_errors_in_a_base_name_the_base_file(tmp_path, monkeypatch):
    (tmp_path / "typo.json").write_text('{"base": "fast", "train": {"itres": 5}}')
    (tmp_path / "mine.json").write_text('{"base": "typo.json", "train": {"iters": 50}}')
    with pytest.raises(PresetError) as e:
        load_preset(tmp_path / "mine.json")
    assert str(e.value).startswith(f"{tmp_path / 'typo.json'}: unknown key 'train.itres'"), str(e.value)
    (tmp_path / "mine.json").write_text('{"base": "fast.json"}')
    with pytest.raises(PresetError) as e:
        load_preset(tmp_path / "mine.json")
    assert f"{tmp_path / 'mine.json'}: 'base' names " in str(e.value)
    assert "no such preset file (did you mean the named preset 'fast'?)" in str(e.value)
    # a name that is a file in the current folder without its .json
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PresetError, match=r"unknown preset 'typo' \(did you mean the file typo.json\?\)"):
        load_preset("typo")
    for bad in ("NaN", "Infinity", "-Infinity"):
        (tmp_path / "nan.json").write_text('{"base": "fast", "train": {"lr_means": %s}}' % bad)
        with pytest.raises(PresetError, match=f"nan.json: {bad} is not a number a run can use"):
            load_preset("nan.json")
    (tmp_path / "dup.json").write_text('{"train": {"iters": 5, "iters": 6}}')
    with pytest.raises(PresetError, match="dup.json: key 'iters' appears twice"):
        load_preset("dup.json")


def test_preset_file_errors_beyond_keys(tmp_path):
    f = tmp_path / "broken.json"
    f.write_text('{"base": "fast",\n')
    with pytest.raises(PresetError, match=r"broken.json: not valid JSON \(line 2"):
        load_preset(f)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text('{"base": "b.json"}')
    b.write_text('{"base": "a.json"}')
    with pytest.raises(PresetError, match="loops back"):
        load_preset(a)
    with pytest.raises(PresetError, match="no such preset file"):
        load_preset(tmp_path / "missing.json")
    with pytest.raises(PresetError, match="choose one of dnerf, dnerf-cpu, fast, handheld, quality"):
        load_preset("turbo")


def test_cli_presets_prints_a_preset_that_loads_back(tmp_path, capsys):
    assert main(["presets"]) == 0
    listing = capsys.readouterr().out
    for name in preset_names():
        assert f"  {name} " in listing
    for name in preset_names():
        assert main(["presets", name]) == 0
        f = tmp_path / f"{name}_copy.json"
        f.write_text(capsys.readouterr().out)
        for field in (None, "hexplane", "mlp", "nodes"):
            assert config_to_json(load_preset(f, field)) == config_to_json(load_preset(name, field))


def test_cli_reconstruct_with_a_preset_file(tmp_path, capsys):
    from scene4d.data.synthetic import make_dnerf_capture

    cap = make_dnerf_capture(tmp_path / "cap", n_train=8, n_test=2, n_val=1, size=32)
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"base": "fast", "train": {"iters": 12, "warmup_iters": 3, "init_points": 200, "seed": 5,
                                                          "densify": {"refine_start": 4, "refine_stop": 8}},
                                "fields": {"nodes": {"nodes": 5, "time_resolution": 4}}}))
    out = tmp_path / "scene"
    assert main(["reconstruct", str(cap), "--out", str(out), "--preset", str(mine)]) == 0
    scene, meta, _ = load_scene(out)
    assert scene.deformation_cfg.kind == "nodes" and scene.deformation_cfg.nodes == 5
    saved = json.loads((out / "scene.json").read_text())["provenance"]["config"]
    assert saved["iters"] == 12 and saved["densify"]["refine_stop"] == 8 and saved["deformation"]["time_resolution"] == 4
    assert saved["seed"] == 5  # the preset's seed, since --seed was not given
    # a bad file stops the run before anything is written
    mine.write_text(json.dumps({"base": "fast", "train": {"iters": -1.5}}))
    capsys.readouterr()
    assert main(["reconstruct", str(cap), "--out", str(tmp_path / "s2"), "--preset", str(mine)]) == 2
    assert "mine.json: 'train.iters' is -1.5, which is not an integer" in capsys.readouterr().err
    assert not (tmp_path / "s2").exists()
    # a finished scene's settings run again, as they are or as a base
    again = tmp_path / "again.json"
    again.write_text(json.dumps({"base": str(out / "scene.json"), "train": {"iters": 9}}))
    cfg = load_preset(again)
    assert (cfg.iters, cfg.densify.refine_stop, cfg.deformation.nodes) == (9, 8, 5)
    assert config_to_json(load_preset(out / "scene.json")) == {**saved, "deformation": {
        **saved["deformation"], "bounds_radius": 1.5, "bounds_center": (0.0, 0.0, 0.0)}}
