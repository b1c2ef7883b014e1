"""Two characters in one prompt: each starts where the toy world's grammar puts it, and its own
score-distillation steps render it alone, framed as the prior frames a single object, scored with
its own words and told the camera as the entity's own frame has it (the time expert's camera test
must recognise its camera there)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from cameras import Cameras
from diffusion_prior.multiview import mvdream_camera
from renderers import rasterize
from scene4d.generate import toyworld as tw
from scene4d.generate.config import load_generate_preset
from scene4d.generate.job import entity_layout, initial_scene, split_entities
from scene4d.generate.objective import ScoreDistillation, orbit_camera
from scene4d.train.objective import StepContext

pytestmark = pytest.mark.usefixtures("one_thread_offline")

SIZE = 48


def _render(gaussians, w2c, K):
    cams = Cameras(K[None], w2c[None], SIZE, SIZE)
    return rasterize(gaussians, cams, background=torch.ones(3), check=False).rgb[0]


@pytest.mark.parametrize("prompt", ["a red ball bouncing next to a blue cube",
                                    "a green cone sliding next to a purple torus spinning",
                                    "a yellow ball growing on top of a white cylinder"])
def test_entity_frames_show_each_object_as_the_single_object_world_does(prompt):
    """Object i of a two-object scene, alone, seen from its entity frame (centre, distance x size)
    is the one-object prompt's ground truth seen from the origin at the same angles, at any time."""
    scene = tw.parse_prompt(prompt)
    labels = scene.entity_labels()
    for i, (centre, size) in enumerate(tw.entity_frames(scene)):
        alone = tw.ToyScene(objects=(scene.objects[i],))
        for t in (0.0, 0.3, 0.7):
            for az, el in ((30.0, 15.0), (200.0, 5.0)):
                g = scene.gaussians_at(t)
                m = labels == i
                part = type(g)(g.means[m], g.quats[m], g.scales[m], g.opacities[m], g.sh[m])
                got = _render(part, *orbit_camera(az, el, 3.0 * size, 42.0, SIZE, centre))
                want = _render(alone.at(t), *orbit_camera(az, el, 3.0, 42.0, SIZE))
                assert (got - want).abs().max() < 0.02, (prompt, i, t, az)
                assert (want < 0.9).any()  # the object is in the picture


def test_layout_follows_the_grammar_for_toy_prompts_and_the_relation_word_otherwise():
    toy = tw.parse_prompt("a red ball bouncing next to a blue cube")
    ents = split_entities(toy.prompt(), None)
    lay = entity_layout(ents, (0.0, 0.0, 0.0), 1.0, toy)
    assert [c[0] for c, _ in lay] == pytest.approx([-tw.NEXT_TO_X, tw.NEXT_TO_X])
    assert [s for _, s in lay] == pytest.approx([tw.PAIR_SCALE] * 2)
    other = entity_layout(split_entities("a knight next to a dragon", None), (0.0, 0.0, 0.0), 1.0)
    assert other[0][0][1] < 0 < other[1][0][1]  # side by side as the front camera (on +x) sees them
    assert entity_layout([("a knight", "")], (1.0, 2.0, 3.0), 2.0) == [((1.0, 2.0, 3.0), 1.0)]


class _Recording:
    """A prior that records what each step hands it (its loss: the render's mean square)."""

    def __init__(self):
        self.calls = []

    def sds(self, images, emb, *, cameras, intrinsics, times, **kw):
        self.calls.append({"images": images.detach(), "emb": emb, "cameras": cameras, "times": times})
        return SimpleNamespace(loss=images.square().mean(), t=torch.tensor([900]), grad_norm=torch.tensor(1.0),
                               preview=None)


def test_entity_steps_render_one_entity_framed_with_its_own_words_and_a_centred_camera():
    prompt = "a red ball bouncing next to a blue cube"
    cfg = load_generate_preset("toy")
    cfg.entity_prob, cfg.iters, cfg.video_prob, cfg.preview_every = 1.0, 20, 0.5, 0
    cfg.video_cameras = [(30.0, 15.0)]
    toy = tw.parse_prompt(prompt)
    ents = split_entities(prompt, None)
    layout = entity_layout(ents, (0.0, 0.0, 0.0), 1.0, toy)
    scene = initial_scene(cfg, ents, (0.0, 0.0, 0.0), 1.0, layout)
    img, vid = _Recording(), _Recording()
    views = [{"center": c, "size": s, "emb": f"image:{i}", "video_emb": f"video:{i}"}
             for i, (c, s) in enumerate(layout)]
    obj = ScoreDistillation(cfg, img, "image:whole", video_prior=vid, video_emb="video:whole", entity_views=views)
    drawn = []

    def render(ctx, t, cams, *, deform, background, entities, sh_degree):
        drawn.append(entities)
        return rasterize(ctx.scene.at(t, deform=deform, entities=entities), cams, background=background, check=False)

    for step in range(1, cfg.iters + 1):
        obj.losses(StepContext(scene, step, obj.plan(step), obj.generator, render))
    assert all(d in ([0], [1]) for d in drawn) and {0, 1} <= {d[0] for d in drawn}
    assert vid.calls and img.calls
    expert = mvdream_camera(orbit_camera(30.0, 15.0, 3.0, 42.0, 32)[0])
    for call in vid.calls:  # the expert's own camera, as the single-object world has it
        assert call["emb"] in ("video:0", "video:1")
        assert (mvdream_camera(call["cameras"][0]) - expert).abs().max() < 1e-3
    for call in img.calls:  # four views about the entity: each sees it in the middle of the picture
        assert call["emb"] in ("image:0", "image:1")
        fg = (call["images"][0].mean(1) < 0.97).float()  # (G, H, W)
        H = fg.shape[-1]
        ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(H, dtype=torch.float32),
                                indexing="ij")
        cx = (fg * xs).sum((1, 2)) / fg.sum((1, 2))
        cy = (fg * ys).sum((1, 2)) / fg.sum((1, 2))
        assert ((cx - (H - 1) / 2).abs() < 0.15 * H).all() and ((cy - (H - 1) / 2).abs() < 0.15 * H).all()
        w2c = call["cameras"][0]  # told as the scene's own cameras: 3 units out, looking at its centre
        eye = torch.linalg.inv(w2c)[:, :3, 3]
        assert torch.allclose(eye.norm(dim=-1), torch.full((len(eye),), 3.0), atol=1e-4)
        assert torch.allclose((w2c[:, 2, :3] * -eye / 3.0).sum(-1), torch.ones(len(eye)), atol=1e-4)


def test_one_entity_prompts_draw_nothing_more():
    """entity_prob changes nothing for one character: the same draws, the same run."""
    cfg = load_generate_preset("toy")
    assert cfg.entity_prob > 0
    a = ScoreDistillation(cfg, _Recording(), "e", entity_views=[])
    cfg2 = load_generate_preset("toy")
    cfg2.entity_prob = 0.0
    b = ScoreDistillation(cfg2, _Recording(), "e", entity_views=[])
    ents = [("a red ball bouncing", "")]
    scene = initial_scene(cfg, ents, (0.0, 0.0, 0.0), 1.0)

    def render(ctx, t, cams, *, deform, background, entities, sh_degree):
        assert entities is None
        return rasterize(ctx.scene.at(t, deform=deform), cams, background=background, check=False)

    for step in (1, 500):
        a.losses(StepContext(scene, step, a.plan(step), a.generator, render))
        b.losses(StepContext(scene, step, b.plan(step), b.generator, render))
    assert torch.equal(a.generator.get_state(), b.generator.get_state())
