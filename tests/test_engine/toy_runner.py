"""A tiny mmengine model, in-memory data and a Runner factory for tests."""
import copy

import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset


class ToyData(Dataset):
    """``length`` random 3x16x16 images, labelled by a fixed rule."""

    def __init__(self, length: int = 32):
        self.length = length

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        gen = torch.Generator().manual_seed(i)
        x = torch.randn(3, 16, 16, generator=gen)
        return dict(inputs=x, labels=torch.tensor(int(x[0].mean() > 0)))


class ToyClassifier(BaseModel):
    """A residual conv net with a LayerNorm head, in OpenMMLab modes."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
            nn.ReLU())
        self.block = nn.Sequential(
            nn.Conv2d(16, 24, 3, padding=1, bias=False), nn.BatchNorm2d(24),
            nn.ReLU(), nn.Conv2d(24, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16))
        self.proj = nn.Linear(16, 32)
        self.norm = nn.LayerNorm(32)
        self.fc = nn.Linear(32, 2)

    def forward(self, inputs, labels=None, mode='tensor'):
        x = self.stem(inputs)
        x = (x + self.block(x)).relu().mean((2, 3))
        logits = self.fc(self.norm(self.proj(x)).relu())
        if mode == 'loss':
            return dict(loss=nn.functional.cross_entropy(logits, labels))
        if mode == 'predict':
            return list(logits.argmax(1))
        return logits


class ShuffleToyClassifier(BaseModel):
    """ShuffleNet V1's units (grouped convs around a channel shuffle, whose
    slabs cross the next conv's groups: other kept columns per conv group)
    in OpenMMLab modes."""

    def __init__(self):
        super().__init__()
        from ..test_comb.test_grouped import ShuffleV1Like
        self.net = ShuffleV1Like(stem=12, width=240)

    def forward(self, inputs, labels=None, mode='tensor'):
        logits = self.net(inputs)
        if mode == 'loss':
            return dict(loss=nn.functional.cross_entropy(logits, labels))
        if mode == 'predict':
            return list(logits.argmax(1))
        return logits


def make_runner(work_dir,
                hook: dict,
                max_iters: int = 24,
                resume=False,
                load_from=None,
                model=None,
                checkpoint_interval: int = 8,
                **kwargs) -> Runner:
    """A Runner training ``model`` (a ToyClassifier) with ``hook``."""
    torch.manual_seed(0)
    cfg = dict(
        model=model if model is not None else ToyClassifier(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=ToyData(),
            batch_size=4,
            sampler=dict(type='DefaultSampler', shuffle=True, seed=0),
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(
            optimizer=dict(type='SGD', lr=0.05, momentum=0.9,
                           weight_decay=1e-4)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', by_epoch=False,
                            interval=checkpoint_interval),
            logger=dict(type='LoggerHook', interval=4)),
        custom_hooks=[copy.deepcopy(hook)],
        randomness=dict(seed=0),
        resume=resume,
        load_from=load_from,
        experiment_name=f'cpd_{id(hook)}_{resume}',
        default_scope='mmengine')
    cfg.update(kwargs)
    return Runner(**cfg)
