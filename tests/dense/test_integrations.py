"""archdsl.integrations on CPU: Mask R-CNN over mlla_t and Faster R-CNN over convnext_t (tiny widths)
each take a training step on a generated 2-image batch with boxes (and masks); the UperNet segmenter overfits a generated 8-image toy
set (ADE20K-style labels with ignored pixels)."""
import pytest
import torch
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

from archdsl import build_model
from archdsl.errors import SpecError
from archdsl.integrations.segmentation import IGNORE_INDEX, segmenter
from archdsl.integrations.torchvision import backbone_with_fpn, faster_rcnn, mask_rcnn

SPEC = "specs/mlla_t.yaml"
TINY = ["stages.embed_dim=16", "stages.depths=[1,1,1,1]", "stages.heads=[1,2,2,4]", "drop_path=0"]
SEG_TINY = ["stages.embed_dim=8", "stages.depths=[1,1,1,1]", "stages.heads=[1,1,2,2]", "drop_path=0"]
SMALL_RCNN = dict(min_size=64, max_size=96, rpn_pre_nms_top_n_train=100, rpn_post_nms_top_n_train=50,
                  rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20, box_batch_size_per_image=32,
                  rpn_batch_size_per_image=64)


def _targets(g, sizes, num_classes):
    """One target per image: 2 boxes with their filled-rectangle masks and labels in 1..K-1."""
    out = []
    for h, w in sizes:
        boxes, masks = [], []
        for _ in range(2):
            x0, y0 = int(torch.randint(0, w // 2, (1,), generator=g)), int(torch.randint(0, h // 2, (1,), generator=g))
            x1, y1 = x0 + w // 3, y0 + h // 3
            boxes.append([x0, y0, x1, y1])
            m = torch.zeros(h, w, dtype=torch.uint8)
            m[y0:y1, x0:x1] = 1
            masks.append(m)
        out.append({"boxes": torch.tensor(boxes, dtype=torch.float32), "masks": torch.stack(masks),
                    "labels": torch.randint(1, num_classes, (2,), generator=g)})
    return out


def test_fpn_levels_follow_out_indices():
    fpn = backbone_with_fpn(SPEC, TINY, out_indices=[1, 2, 3], out_channels=24).eval()
    with torch.no_grad():
        maps = fpn(torch.randn(1, 3, 70, 90))
    assert list(maps) == ["0", "1", "2", "pool"] and fpn.level_names == ["0", "1", "2"]
    assert [tuple(m.shape) for m in maps.values()] == [(1, 24, 9, 12), (1, 24, 5, 6), (1, 24, 3, 3), (1, 24, 2, 2)]
    det = faster_rcnn(SPEC, 5, TINY, out_indices=[2, 3], out_channels=24, min_size=64, max_size=96)
    assert isinstance(det, FasterRCNN) and det.rpn.anchor_generator.sizes == ((32,), (64,), (128,))
    assert det.roi_heads.box_roi_pool.featmap_names == ["0", "1"]
    with pytest.raises(SpecError, match="out of range"):
        backbone_with_fpn(SPEC, TINY, out_indices=[4])


def _train_step(model, images, targets, loss_names):
    """One SGD step in train mode: the losses (all finite, >= 0) and the backbone parameters it changed
    (every backbone parameter must get a finite gradient)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    losses = model(images, targets)
    assert set(losses) == loss_names
    assert all(torch.isfinite(v) and v >= 0 for v in losses.values()), losses
    before = {k: p.detach().clone() for k, p in model.backbone.body.named_parameters()}
    opt.zero_grad()
    sum(losses.values()).backward()
    grads = [p.grad for p in model.backbone.body.parameters()]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
    opt.step()
    return losses, [k for k, p in model.backbone.body.named_parameters() if not torch.equal(p, before[k])]


def _batch(num_classes):
    g = torch.Generator().manual_seed(0)
    sizes = [(72, 96), (80, 64)]
    images = [torch.rand(3, h, w, generator=g) for h, w in sizes]
    return images, _targets(g, sizes, num_classes)


RPN_LOSSES = {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}


def test_mask_rcnn_train_step_on_generated_batch():
    torch.manual_seed(0)
    num_classes, width = 4, 32
    model = mask_rcnn(SPEC, num_classes, TINY + ["features.norm=true"], out_channels=width,
                      mask_head=MaskRCNNHeads(width, (width, width), 1),
                      mask_predictor=MaskRCNNPredictor(width, width, num_classes),
                      box_head=TwoMLPHead(width * 7 * 7, 64), box_predictor=FastRCNNPredictor(64, num_classes),
                      **SMALL_RCNN)
    assert isinstance(model, MaskRCNN) and model.backbone.body.feature_info.channels() == [16, 32, 64, 128]
    images, targets = _batch(num_classes)
    losses, changed = _train_step(model, images, targets, RPN_LOSSES | {"loss_mask"})
    assert losses["loss_mask"] > 0
    assert "stem.conv1.conv.weight" in changed and "norm3.weight" in changed and "stages.3.blocks.0.mlp.fc2.weight" in changed
    model.eval()
    with torch.no_grad():
        dets = model(images)
    assert len(dets) == 2 and set(dets[0]) == {"boxes", "labels", "scores", "masks"}
    assert dets[1]["masks"].shape[-2:] == (80, 64)  # masks pasted back at the input size


def test_faster_rcnn_train_step_on_generated_batch():
    """Faster R-CNN over another family (ConvNeXt-T, tiny widths), three levels: a training step
    moves the backbone from the stem to the last stage used."""
    torch.manual_seed(0)
    num_classes, width = 3, 32
    model = faster_rcnn("specs/zoo/convnext_t.yaml", num_classes, ["stages.embed_dim=16", "stages.depths=[1,1,1,1]",
                                                                   "drop_path=0"],
                        out_indices=[1, 2, 3], out_channels=width, box_head=TwoMLPHead(width * 7 * 7, 64),
                        box_predictor=FastRCNNPredictor(64, num_classes), **SMALL_RCNN)
    assert isinstance(model, FasterRCNN) and model.backbone.body.feature_info.channels() == [32, 64, 128]
    images, targets = _batch(num_classes)
    for t in targets:
        del t["masks"]
    losses, changed = _train_step(model, images, targets, RPN_LOSSES)
    assert losses["loss_classifier"] > 0 and losses["loss_objectness"] > 0
    # (layer scale 1e-6 at init: a block's conv / MLP weights move by less than fp32 resolves, its gamma moves)
    assert {"stem.proj.weight", "stem.norm.weight", "stages.0.blocks.0.ls.gamma", "stages.2.downsample.conv.weight",
            "stages.3.blocks.0.ls.gamma", "stages.3.blocks.0.mlp.fc2.bias"} <= set(changed)
    model.eval()
    with torch.no_grad():
        dets = model(images)
    assert len(dets) == 2 and set(dets[0]) == {"boxes", "labels", "scores"}
    assert all(((d["labels"] >= 1) & (d["labels"] < num_classes)).all() for d in dets)


def _toy_segmentation(n=8, size=(32, 48), num_classes=4):
    """Images with two coloured rectangles on a noisy background; labels = the rectangle's class
    (colour-coded), background 0, a one-pixel border ignored (255)."""
    g = torch.Generator().manual_seed(0)
    colours = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    h, w = size
    imgs, labels = 0.1 * torch.rand(n, 3, h, w, generator=g), torch.zeros(n, h, w, dtype=torch.long)
    for i in range(n):
        for _ in range(2):
            k = int(torch.randint(1, num_classes, (1,), generator=g))
            y0, x0 = int(torch.randint(0, h - 16, (1,), generator=g)), int(torch.randint(0, w - 16, (1,), generator=g))
            imgs[i, :, y0:y0 + 16, x0:x0 + 16] = colours[k][:, None, None]
            labels[i, y0:y0 + 16, x0:x0 + 16] = k
    labels[:, 0, :] = labels[:, -1, :] = IGNORE_INDEX
    return imgs, labels


def test_upernet_segmenter_overfits_toy_set():
    torch.manual_seed(0)
    imgs, labels = _toy_segmentation()
    model = segmenter(SPEC, 4, SEG_TINY, decoder_options={"channels": 16, "dropout": 0.0})
    assert model.backbone.features_only and model.decode_head.in_channels == [8, 16, 32, 64]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(40):  # measured: 1.35 -> 0.26 in 20 steps, 0.12 in 40
        loss = model.loss(imgs, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if losses[-1] < losses[0] / 5:
            break
    assert losses[-1] < losses[0] / 5, losses
    model.eval()
    with torch.no_grad():
        assert model(imgs[:1]).shape == (1, 4, 32, 48)


def test_segmenter_from_a_classifier_and_unknown_decoder():
    clf = build_model(SPEC, TINY + ["num_classes=3"])
    seg = segmenter(clf, 2, out_indices=[2, 3], decoder_options={"channels": 8})
    assert seg.backbone is clf and clf.head is None and clf.out_indices == (2, 3)
    seg.eval()
    with torch.no_grad():
        assert seg(torch.randn(1, 3, 50, 70)).shape == (1, 2, 50, 70)
    with pytest.raises(SpecError, match="unknown decoder 'uppernet' \\(did you mean 'upernet'\\?\\)"):
        segmenter(SPEC, 2, TINY, decoder="uppernet")
