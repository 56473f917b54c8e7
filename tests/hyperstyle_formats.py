"""Writers for HyperStyle's released file formats, used by the tests to make tiny seeded models.

The layouts are spelled out here independently of the package under test:

* ``hyperstyle_*.pt``: ``{"state_dict": {"hypernet.*", "decoder.*"}, "opts": {...},
  "latent_avg": [n_styles, 512]}`` where ``hypernet.*`` is the ResNet-34
  hypernetwork (torchvision block names; the shared weight generator appears
  under ``shared_weight_hypernet.*`` *and* again under
  ``refinement_blocks.<i>.hypernet.*`` for every shared block) and
  ``decoder.*`` a rosinality StyleGAN2 generator;
* ``faces_w_encoder.pt``: a pSp checkpoint, ``encoder.*`` (IR-SE-50 +
  ``linear``), ``decoder.*``, ``latent_avg``, ``opts``.

Only the generator is tiny (few channels); the ResNet-34 body, conv stacks
and the 512-wide shared-generator code keep their official sizes.
"""

from __future__ import annotations

import math
from pathlib import Path

import official_formats as of
import torch

RESNET34 = [(64, 3), (128, 4), (256, 6), (512, 3)]
SHARED = {0, 2, 3, 5, 6, 8, 9, 11, 12}

# A 128 px generator with few channels: indices 0..16 exist (17 outputs).
TINY_RESOLUTION = 128
TINY_CHANNELS = {4: 16, 8: 16, 16: 16, 32: 16, 64: 16, 128: 8}
# shared (0, 5, 11), toRGB (1, 16), one offset per channel pair (14, 15)
TINY_LAYERS = "0,1,5,11,14,15,16"


def _rn(seed):
    g = torch.Generator().manual_seed(seed)

    def rn(*shape, scale=1.0, shift=0.0):
        return torch.randn(shape, generator=g) * scale + shift

    return rn


def _blur_times_4():
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = torch.outer(k, k)
    return k / k.sum() * 4


def official_index_name(index):
    """Upstream layer index -> (rosinality module, our parameter name), spelled out."""
    if index == 0:
        return "conv1", "b4.conv1.weight"
    if index == 1:
        return "to_rgb1", "b4.torgb.weight"
    j, slot = divmod(index - 2, 3)
    res = 8 * 2**j
    return (
        [f"convs.{2 * j}", f"convs.{2 * j + 1}", f"to_rgbs.{j}"][slot],
        f"b{res}.{['conv0', 'conv1', 'torgb'][slot]}.weight",
    )


def rosinality_decoder(seed=20, size=TINY_RESOLUTION, channels=None, n_mlp=2, style_dim=512):
    """rosinality ``Generator.state_dict()`` keys with seeded values."""
    channels = channels or TINY_CHANNELS
    rn = _rn(seed)
    sd = {}
    for i in range(1, n_mlp + 1):
        sd[f"style.{i}.weight"] = rn(style_dim, style_dim)
        sd[f"style.{i}.bias"] = rn(style_dim, scale=0.1)
    c4 = channels[4]
    sd["input.input"] = rn(1, c4, 4, 4)

    def styled(p, cin, cout, up):
        sd[f"{p}.conv.weight"] = rn(1, cout, cin, 3, 3)
        if up:
            sd[f"{p}.conv.blur.kernel"] = _blur_times_4()
        sd[f"{p}.conv.modulation.weight"] = rn(cin, style_dim)
        sd[f"{p}.conv.modulation.bias"] = rn(cin, scale=0.1, shift=1.0)
        sd[f"{p}.noise.weight"] = rn(1, scale=0.1)
        sd[f"{p}.activate.bias"] = rn(cout, scale=0.1)

    def rgb(p, cin, up):
        if up:
            sd[f"{p}.upsample.kernel"] = _blur_times_4()
        sd[f"{p}.conv.weight"] = rn(1, 3, cin, 1, 1, scale=0.3)
        sd[f"{p}.conv.modulation.weight"] = rn(cin, style_dim)
        sd[f"{p}.conv.modulation.bias"] = rn(cin, scale=0.1, shift=1.0)
        sd[f"{p}.bias"] = rn(1, 3, 1, 1, scale=0.1)

    styled("conv1", c4, c4, False)
    rgb("to_rgb1", c4, False)
    log2 = int(math.log2(size))
    prev = c4
    for j, s in enumerate(range(3, log2 + 1)):
        c = channels[2**s]
        styled(f"convs.{2 * j}", prev, c, True)
        styled(f"convs.{2 * j + 1}", c, c, False)
        rgb(f"to_rgbs.{j}", c, True)
        prev = c
    sd["noises.noise_0"] = rn(1, 1, 4, 4)
    for j, s in enumerate(range(3, log2 + 1)):
        sd[f"noises.noise_{2 * j + 1}"] = rn(1, 1, 2**s, 2**s)
        sd[f"noises.noise_{2 * j + 2}"] = rn(1, 1, 2**s, 2**s)
    return sd


def _bn(sd, p, c, rn):
    sd[p + ".weight"] = rn(c, scale=0.1, shift=1.0)
    sd[p + ".bias"] = rn(c, scale=0.1)
    sd[p + ".running_mean"] = rn(c, scale=0.1)
    sd[p + ".running_var"] = 1 + rn(c, scale=0.1).abs()
    sd[p + ".num_batches_tracked"] = torch.tensor(1000)


def _he(rn, *shape, damp=1.0):
    fan_in = shape[1] * shape[2] * shape[3]
    return rn(*shape, scale=damp * math.sqrt(2.0 / fan_in))


def _convs(sd, p, rn, chans, bias=0.05):
    for j in range(len(chans) - 1):
        sd[f"{p}.convs.{2 * j}.weight"] = _he(rn, chans[j + 1], chans[j], 3, 3)
        sd[f"{p}.convs.{2 * j}.bias"] = rn(chans[j + 1], scale=bias)


def hypernet_state_dict(shapes, layers_to_tune, separable=False, seed=30, offset_scale=0.05):
    """``SharedWeightsHyperNetResNet[Separable].state_dict()`` keys for the given layer shapes.

    ``shapes``: our parameter name -> (out, in, k, k) of the generator.
    """
    rn = _rn(seed)
    sd = {}
    sd["conv1.weight"] = _he(rn, 64, 6, 7, 7)
    _bn(sd, "bn1", 64, rn)
    sd["relu.weight"] = rn(64, scale=0.05, shift=0.25)
    u, in_c = 0, 64
    for s, (depth, n) in enumerate(RESNET34):
        for i in range(n):
            p = f"body.{u}"
            stride = 2 if (i == 0 and s > 0) else 1
            sd[p + ".conv1.weight"] = _he(rn, depth, in_c, 3, 3)
            _bn(sd, p + ".bn1", depth, rn)
            sd[p + ".conv2.weight"] = _he(rn, depth, depth, 3, 3, damp=0.3)
            _bn(sd, p + ".bn2", depth, rn)
            if stride != 1 or in_c != depth:
                sd[p + ".downsample.0.weight"] = _he(rn, depth, in_c, 1, 1)
                _bn(sd, p + ".downsample.1", depth, rn)
            in_c = depth
            u += 1
    # The shared weight generator, sized for the 3x3 layers it serves.
    shared_shape = next(shapes[official_index_name(i)[1]] for i in sorted(SHARED) if official_index_name(i)[1] in shapes)
    so, si, sk = shared_shape[0], shared_shape[1], shared_shape[2]
    shared = {
        "w1": rn(512, so * sk * sk, scale=offset_scale / math.sqrt(512)),
        "b1": rn(so * sk * sk, scale=0.01),
        "w2": rn(512, si * 512, scale=1 / math.sqrt(512)),
        "b2": rn(si * 512, scale=0.05),
    }
    for k, v in shared.items():
        sd[f"shared_weight_hypernet.{k}"] = v
    for idx in [int(t) for t in layers_to_tune.split(",")]:
        name = official_index_name(idx)[1]
        o, i, k = shapes[name][0], shapes[name][1], shapes[name][2]
        p = f"refinement_blocks.{idx}"
        torgb = idx == 1 or (idx - 2) % 3 == 2
        if idx in SHARED:
            _convs(sd, p, rn, (512, 128, 128, 128, 128, 512))  # first conv has stride 1
            sd[p + ".linear.weight"] = rn(512, 512)
            sd[p + ".linear.bias"] = rn(512, scale=0.05)
            for key, v in shared.items():
                sd[f"{p}.hypernet.{key}"] = v  # the same tensor, as torch.save stores a shared module
        elif torgb:
            _convs(sd, p, rn, (512, 256, 256, 256, 512))
            sd[p + ".output.0.weight"] = rn(o * i, 512, 1, 1, scale=offset_scale / math.sqrt(512))
            sd[p + ".output.0.bias"] = rn(o * i, scale=0.02)
        elif separable:
            _convs(sd, p, rn, (512, 256, 256, 256, 512))
            sd[p + ".output.0.make_kernel_in.weight"] = rn(k * k * i, 512, scale=0.5 / math.sqrt(512))
            sd[p + ".output.0.make_kernel_in.bias"] = rn(k * k * i, scale=0.01)
            sd[p + ".output.0.make_kernel_out.weight"] = rn(k * k * o, 512, scale=0.5 / math.sqrt(512))
            sd[p + ".output.0.make_kernel_out.bias"] = rn(k * k * o, scale=0.01)
            sd[p + ".output.0.kernel_linear_in.weight"] = rn(i, i, scale=1 / math.sqrt(i))
            sd[p + ".output.0.kernel_linear_in.bias"] = rn(i, scale=0.01)
            sd[p + ".output.0.kernel_linear_out.weight"] = rn(o, o, scale=1 / math.sqrt(o))
            sd[p + ".output.0.kernel_linear_out.bias"] = rn(o, scale=0.01)
        else:
            _convs(sd, p, rn, (512, 256, 256, 512))
            sd[p + ".output.1.weight"] = rn(o * i, 512, 1, 1, scale=offset_scale / math.sqrt(512))
            sd[p + ".output.1.bias"] = rn(o * i, scale=0.02)
    return sd


def tiny_shapes(channels=None, size=TINY_RESOLUTION):
    channels = channels or TINY_CHANNELS
    shapes = {"b4.conv1.weight": (channels[4], channels[4], 3, 3), "b4.torgb.weight": (3, channels[4], 1, 1)}
    r = 8
    while r <= size:
        shapes[f"b{r}.conv0.weight"] = (channels[r], channels[r // 2], 3, 3)
        shapes[f"b{r}.conv1.weight"] = (channels[r], channels[r], 3, 3)
        shapes[f"b{r}.torgb.weight"] = (3, channels[r], 1, 1)
        r *= 2
    return shapes


def hyperstyle_opts(size=TINY_RESOLUTION, layers=TINY_LAYERS, separable=False, **extra):
    opts = dict(
        exp_dir="experiments/hyperstyle", dataset_type="ffhq_hypernet",
        encoder_type="SharedWeightsHyperNetResNetSeparable" if separable else "SharedWeightsHyperNetResNet",
        input_nc=6, output_size=size, batch_size=8, learning_rate=0.0001, optim_name="ranger",
        layers_to_tune=layers, n_hypernet_outputs=3 * int(math.log2(size)) - 4, load_w_encoder=True,
        w_encoder_checkpoint_path="pretrained_models/faces_w_encoder.pt", w_encoder_type="WEncoder",
        n_iters_per_batch=5, max_steps=500000, device="cuda:0",
    )
    opts.update(extra)
    return opts


def write_hyperstyle_checkpoint(path, layers=TINY_LAYERS, separable=False, seed=40, opts=None, latent_avg=True):
    size = TINY_RESOLUTION
    n_styles = 2 * int(math.log2(size)) - 2
    sd = {"hypernet." + k: v for k, v in hypernet_state_dict(tiny_shapes(), layers, separable, seed).items()}
    sd.update({"decoder." + k: v for k, v in rosinality_decoder(seed + 1).items()})
    ckpt = {"state_dict": sd, "opts": opts if opts is not None else hyperstyle_opts(layers=layers, separable=separable)}
    if latent_avg:
        ckpt["latent_avg"] = _rn(seed + 2)(512, scale=0.5).repeat(n_styles, 1)
    torch.save(ckpt, path)
    return Path(path)


def write_faces_w_encoder(path, seed=50, with_decoder=True):
    """pSp checkpoint of HyperStyle's W encoder: ``encoder.*`` (+ ``decoder.*``, ``latent_avg``)."""
    sd = {"encoder." + k: v for k, v in of.w_encoder_state_dict(seed).items()}
    ckpt = {"state_dict": sd, "opts": {"encoder_type": "WEncoder", "output_size": TINY_RESOLUTION, "input_nc": 3}}
    if with_decoder:
        sd.update({"decoder." + k: v for k, v in rosinality_decoder(seed + 1).items()})
        ckpt["latent_avg"] = _rn(seed + 2)(512, scale=0.5).repeat(2 * int(math.log2(TINY_RESOLUTION)) - 2, 1)
    torch.save(ckpt, path)
    return Path(path)
