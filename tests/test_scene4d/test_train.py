"""The shared fitting loop (scene4d.train) and multi-entity scenes: bit-exact resume over two
objectives, loss weighting, freezing, entities through densification and the scene folder."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file, save_file

from scene4d.data import load_capture
from scene4d.data.synthetic import make_dnerf_capture
from scene4d.deformation import HexPlaneConfig, MotionNodesConfig
from scene4d.densify import DefaultStrategy, DensifyConfig
from scene4d.field import Scene4D, init_params
from scene4d.io import load_scene, save_scene
from scene4d.reconstruct import TrainConfig, train
from scene4d.train import FitConfig, StepContext, StepPlan, fit, make_optimizers


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    return load_capture(make_dnerf_capture(tmp_path_factory.mktemp("cap") / "capture", n_train=8, n_test=2, n_val=0,
                                           size=24))


def two_entities(seed: int = 0, n: int = 60) -> Scene4D:
    """Entity "a" (motion nodes) on the left, "b" (planes) on the right, 2n Gaussians in all."""
    g = torch.Generator().manual_seed(seed)
    left = torch.rand(n, 3, generator=g) * 0.4 - torch.tensor([0.5, 0.2, 0.2])
    right = torch.rand(n, 3, generator=g) * 0.4 + torch.tensor([0.1, -0.2, -0.2])
    scene = Scene4D.from_entities([
        ("a", init_params(left, torch.rand(n, 3, generator=g), 0, opacity=0.5), MotionNodesConfig(nodes=6, time_resolution=4)),
        ("b", init_params(right, torch.rand(n, 3, generator=g), 0, opacity=0.5),
         HexPlaneConfig(features=4, resolutions=[8], time_resolution=4, hidden=16, bounds_radius=1.0)),
    ], sh_degree=0)
    scene.initialize_fields()
    return scene


class ToyObjective:
    """A second objective with the shape generate's will have: a multi-entity scene, several
    renders per step (a 'video' of G frames at G times from one camera, and one render of entity b
    alone into two cameras at once), canonical Gaussians frozen on every third step, the learning
    rates halved on every fifth, targets = the capture's images."""

    label = "toy"

    def __init__(self, images, cams, generator, weights=None):
        self.images, self.cams, self.generator = images, cams, generator
        self.weights = dict(weights) if weights is not None else {
            "video": 1.0, "entity_b": 0.5, "time_smoothness": 1e-3, "plane_tv": 1e-4, "arap": 0.1}
        self.frozen_steps = []

    def plan(self, step):
        frozen = step % 3 == 0
        if frozen:
            self.frozen_steps.append(step)
        return StepPlan(deform=step > 2, train_canonical=not frozen, train_deformation=step > 2, sh_degree=0,
                        lr_scale=0.5 if step % 5 == 0 else 1.0)

    def losses(self, ctx: StepContext):
        i = int(torch.randint(len(self.cams), (1,), generator=ctx.generator))
        times = torch.rand(2, generator=ctx.generator).tolist()
        video = 0
        for t in times:
            out = ctx.render(t, self.cams[i], background=torch.ones(3))
            video = video + (out.rgb - self.images[i : i + 1]).square().mean()
        j = torch.randint(len(self.cams), (2,), generator=ctx.generator)
        both = ctx.render(times[0], self.cams[j], entities=[1], background=torch.ones(3))
        return {"video": video, "entity_b": (both.rgb - self.images[j]).abs().mean()}

    def state_tensors(self):
        return {"gen": self.generator.get_state()}

    def load_state_tensors(self, tensors):
        self.generator.set_state(tensors["gen"])

    def progress_info(self):
        return {}


def toy_fit_config(iters=24):
    return FitConfig(iters=iters, densify=DensifyConfig(refine_start=2, refine_every=4, refine_stop=20, reset_every=12,
                                                        grow_grad2d=1e-7, grow_scale3d=0.05),
                     deformation_lr_start=2, checkpoint_every=1000)


def run_toy(capture, out, *, stop_at=None, resume=False, weights=None, iters=24):
    torch.manual_seed(0)
    scene = two_entities()
    obj = ToyObjective(capture.train.images, capture.train.cameras, torch.Generator().manual_seed(1), weights)
    res = fit(scene, obj, out, toy_fit_config(iters), resume=resume, stop_at=stop_at, progress=False,
              publish={"train_cameras": capture.train.cameras, "up": "+y"})
    return res, obj


@pytest.mark.parametrize("objective", ["photometric", "toy-entities"])
def test_fit_resume_is_bit_exact(capture, tmp_path, objective):
    """Straight through, and stopped at step 11 then resumed: the same weights, tensor for tensor,
    for reconstruction's objective and for one that renders several times per step, freezes the
    canonical Gaussians on some steps and densifies a two-entity scene."""
    if objective == "photometric":
        def run(out, **kw):
            cfg = TrainConfig(iters=24, warmup_iters=4, sh_degree=1, sh_interval=8, init_points=200, time_curriculum=0.5,
                              deformation=MotionNodesConfig(nodes=6, time_resolution=4), checkpoint_every=1000,
                              densify=DensifyConfig(refine_start=3, refine_every=4, refine_stop=20, reset_every=12,
                                                    grow_grad2d=1e-5))
            return train(capture, out, cfg, progress=False, evaluate=False, **kw)
    else:
        def run(out, **kw):
            return run_toy(capture, out, **kw)[0]
    a = run(tmp_path / "a")
    part = run(tmp_path / "b", stop_at=11)
    assert part.steps == 11 and not (tmp_path / "b" / "scene.json").exists()
    assert json.loads((tmp_path / "b" / "checkpoints" / "latest.json").read_text())["step"] == 11
    b = run(tmp_path / "b", resume=True)
    assert b.steps == 24
    wa = load_file(str(tmp_path / "a" / "weights.safetensors"))
    wb = load_file(str(tmp_path / "b" / "weights.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    if objective != "photometric":
        assert len(a.scene) != 120, "the toy run should have densified"
        assert set(torch.unique(wa["entity.index"]).tolist()) == {0, 1}
        meta = json.loads((tmp_path / "a" / "scene.json").read_text())
        assert meta["version"] == 2 and meta["up"] == "+y" and [e["name"] for e in meta["entities"]] == ["a", "b"]
        assert sum(e["n_gaussians"] for e in meta["entities"]) == len(a.scene)
        assert not (tmp_path / "b" / "checkpoints" / "latest.json").exists()


def test_a_loss_term_without_a_weight_is_an_error(capture, tmp_path):
    # a term the objective returns
    with pytest.raises(KeyError, match=r"\['entity_b'\] have no weight"):
        run_toy(capture, tmp_path / "a", weights={"video": 1.0, "time_smoothness": 0, "plane_tv": 0, "arap": 0})
    # a field's regulariser (the nodes field's arap) once the deformation is on at step 3
    with pytest.raises(KeyError, match=r"\['arap'\] have no weight"):
        run_toy(capture, tmp_path / "b", weights={"video": 1.0, "entity_b": 1.0, "time_smoothness": 0, "plane_tv": 0})


def test_a_frozen_plan_leaves_the_canonical_gaussians_bit_identical(capture, tmp_path):
    """train_canonical=False: no optimiser step and no densification; the deformation still trains.
    train_deformation=False (with deform on): the fields do not change."""

    class Frozen(ToyObjective):
        def __init__(self, *a, canonical: bool, deformation: bool, **k):
            super().__init__(*a, **k)
            self.canonical, self.deformation = canonical, deformation

        def plan(self, step):
            return StepPlan(deform=True, train_canonical=self.canonical, train_deformation=self.deformation)

    for canonical, deformation in [(False, True), (True, False)]:
        torch.manual_seed(0)
        scene = two_entities()
        before = {k: v.detach().clone() for k, v in scene.state_dict().items()}
        obj = Frozen(capture.train.images, capture.train.cameras, torch.Generator().manual_seed(1),
                     canonical=canonical, deformation=deformation)
        # densification due at steps 3, 6 (grow everything), opacity reset at 6: none may happen while frozen
        cfg = replace(toy_fit_config(8), densify=DensifyConfig(refine_start=1, refine_every=3, reset_every=6,
                                                               grow_grad2d=0.0))
        fit(scene, obj, tmp_path / f"{canonical}{deformation}", cfg, progress=False)
        after = scene.state_dict()
        canon = [k for k in before if k.startswith("params.") or k == "entity"]
        fields = [k for k in before if k.startswith("fields.") and "center" != k.split(".")[-1]]
        assert canon and fields
        for k in canon:
            assert torch.equal(before[k], after[k]) == (not canonical), k
        changed = [k for k in fields if not torch.equal(before[k], after[k])]
        assert bool(changed) == deformation, changed


def test_each_entity_moves_only_by_its_own_field():
    torch.manual_seed(0)
    scene = two_entities()
    ia, ib = scene.rows([0]), scene.rows([1])
    assert len(ia) == len(ib) == 60 and scene.entity_names == ["a", "b"]
    with torch.no_grad():
        c = scene.canonical()
        for t in (0.0, 0.5, 1.0):  # fresh fields: identity
            torch.testing.assert_close(scene.at(t).means, c.means, atol=1e-6, rtol=0)
        scene.fields[0].translations[:, :, 0] = 0.3  # entity a slides along +x at every knot
        for p in scene.fields[1].heads.parameters():  # entity b's planes move it somewhere else
            p.normal_(0, 0.1)
        g = scene.at(0.5)
        torch.testing.assert_close(g.means[ia], c.means[ia] + torch.tensor([0.3, 0.0, 0.0]), atol=1e-5, rtol=0)
        moved_b = g.means[ib] - c.means[ib]
        assert moved_b.abs().max() > 1e-3  # b moved by its own field...
        scene.fields[0].translations.zero_()
        assert torch.equal(scene.at(0.5).means[ib], g.means[ib])  # ...and a's field does not touch it
        # one entity alone: its rows, as in the composite
        for i, rows in ((0, ia), (1, ib)):
            one = scene.at(0.5, entities=[i])
            full = scene.at(0.5)
            assert one.means.shape[0] == len(rows)
            assert torch.equal(one.means, full.means[rows]) and torch.equal(one.sh, full.sh[rows])
        # deformation off: canonical everywhere
        assert torch.equal(scene.at(0.5, deform=False).means, c.means)
    # regularisers are per field (entity): the sum of each field's own terms
    reg = scene.regularizers()
    own = [f.regularizers() for f in scene.fields]
    torch.testing.assert_close(reg["time_smoothness"], own[0]["time_smoothness"] + own[1]["time_smoothness"])
    assert torch.equal(reg["arap"], own[0]["arap"]) and torch.equal(reg["plane_tv"], own[1]["plane_tv"])
    # a term the objective weighs 0 is not computed; the others are the same
    some = scene.regularizers(skip={"arap"})
    assert "arap" not in some and set(some) == set(reg) - {"arap"}
    assert all(torch.equal(some[k], reg[k]) for k in some)
    with pytest.raises(ValueError, match="2 entities; use scene.fields"):
        scene.deformation  # noqa: B018


def test_arap_is_zero_for_rigid_motion_and_stays_inside_its_entity():
    import roma

    torch.manual_seed(0)
    scene = two_entities()
    nodes = scene.fields[0]
    assert float(nodes.arap().detach()) == 0.0
    with torch.no_grad():
        R = roma.rotvec_to_rotmat(torch.tensor([0.0, 0.0, 0.7]))
        nodes.rotvecs[:, 2] = torch.tensor([0.0, 0.0, 0.7])
        nodes.translations[:, 2] = nodes.centers @ R.T + torch.tensor([0.1, 0.0, 0.0]) - nodes.centers
    assert float(nodes.arap().detach()) < 1e-10  # one rigid motion of every node
    with torch.no_grad():
        nodes.translations[0, 1] += torch.tensor([0.0, 0.2, 0.0])  # one node leaves its neighbours
    assert float(nodes.arap().detach()) > 1e-4


def test_entity_index_survives_densification():
    """Clones and split children belong to their parent's entity; pruned rows leave with theirs."""
    torch.manual_seed(0)
    scene = two_entities(n=20)
    n = len(scene)
    with torch.no_grad():
        scene.params["sh_dc"][:, 0, 0] = torch.arange(n, dtype=torch.float32)  # a row id that surgery copies
        scene.params["log_scales"][::2] = math.log(0.3)  # even rows large: split; odd rows small: clone
        scene.params["opacity_logits"][5] = -10.0  # pruned
    opts, _ = make_optimizers(scene, FitConfig())
    strategy = DefaultStrategy(DensifyConfig(refine_start=0, refine_every=1, grow_scale3d=0.1, prune_scale3d=10.0,
                                             reset_every=10_000), scene_scale=1.0)
    state = strategy.initialize_state(n)
    state["grad2d"][:] = 1.0
    state["count"][:] = 1.0
    parent_entity = scene.entity.clone()
    report = strategy.step_post_backward(scene.params, opts, state, 1, [], buffers=scene.row_buffers)
    assert report["cloned"] + report["split"] == n and min(report["cloned"], report["split"]) >= n // 4
    assert report["pruned"] >= 1
    ids = scene.params["sh_dc"][:, 0, 0].round().long()
    assert scene.entity.shape == (len(scene),) and scene.entity.dtype == torch.long
    assert torch.equal(scene.entity, parent_entity[ids])
    assert 5 not in ids.tolist()
    # the composite still lines up row for row after the surgery
    for i in (0, 1):
        rows = scene.rows([i])
        assert torch.equal(scene.at(0.3, entities=[i]).means, scene.at(0.3).means[rows])


def test_version_1_folder_loads(tmp_path):
    """A folder as version 1 wrote it (one entity, weights 'deformation.*', no index, no 'up')."""
    torch.manual_seed(0)
    scene = Scene4D(init_params(torch.rand(30, 3) - 0.5, None, 0), MotionNodesConfig(nodes=4, time_resolution=3), 0)
    scene.initialize_fields()
    with torch.no_grad():
        scene.fields[0].translations.normal_(0, 0.05)
    save_scene(tmp_path / "v2", scene)
    v1 = tmp_path / "v1"
    v1.mkdir()
    w = load_file(str(tmp_path / "v2" / "weights.safetensors"))
    save_file({k.replace("deformation.0.", "deformation."): v for k, v in w.items() if k != "entity.index"},
              str(v1 / "weights.safetensors"))
    meta = json.loads((tmp_path / "v2" / "scene.json").read_text())
    meta["version"] = 1
    del meta["up"]
    (v1 / "scene.json").write_text(json.dumps(meta))
    (v1 / "cameras.json").write_text("{}")
    back, m, _ = load_scene(v1)
    assert m["version"] == 1 and m["up"] == "+z" and back.n_entities == 1 and back.entity_names == ["scene"]
    for t in (0.0, 0.6):
        assert torch.equal(back.at(t).means, scene.at(t).means)


def test_multi_entity_folder_round_trips_and_renders(tmp_path, capsys):
    from scene4d.cli import load_scene as cli_load_scene
    from scene4d.cli import main

    torch.manual_seed(0)
    scene = two_entities()
    with torch.no_grad():
        scene.fields[0].translations.normal_(0, 0.05)
    assert scene.add_entity("ground") == 2  # a static third entity
    scene.entity[-5:] = 2
    save_scene(tmp_path / "s", scene, up="-y")
    back, meta, _ = load_scene(tmp_path / "s")
    assert meta["up"] == "-y" and [e["n_gaussians"] for e in meta["entities"]] == [60, 55, 5]
    assert meta["entities"][2]["deformation"] is None and back.fields[2] is None
    for t in (0.1, 0.9):
        assert torch.equal(back.at(t).means, scene.at(t).means)
    sc, _, _ = cli_load_scene(tmp_path / "s")
    assert sc.n_entities == 3 and sc.dynamic
    assert main(["render", str(tmp_path / "s"), "--path", "orbit", "--frames", "2", "--size", "16x16",
                 "--out", str(tmp_path / "o.mp4")]) == 0
    with pytest.raises(ValueError, match="up must be one of"):
        save_scene(tmp_path / "bad", scene, up="up")


def test_a_render_of_one_entity_feeds_the_statistics_of_its_own_rows(capture):
    from renderers import rasterize

    torch.manual_seed(0)
    scene = two_entities()
    opts, _ = make_optimizers(scene, FitConfig())
    strategy = DefaultStrategy(DensifyConfig(refine_start=100), scene_scale=1.0)
    state = strategy.initialize_state(len(scene))
    out = rasterize(scene.at(0.3, entities=[1]), capture.train.cameras[:2], background=torch.ones(3), check=False)
    strategy.step_pre_backward(out)
    (out.rgb - 0.5).square().mean().backward()
    strategy.step_post_backward(scene.params, opts, state, 1, [(out, scene.rows([1]))], buffers=scene.row_buffers)
    a, b = scene.rows([0]), scene.rows([1])
    assert float(state["count"][a].sum()) == 0 and float(state["grad2d"][a].sum()) == 0
    assert float(state["count"][b].sum()) > 0 and float(state["grad2d"][b].sum()) > 0
