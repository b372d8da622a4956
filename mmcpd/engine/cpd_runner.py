"""CPDRunner: the runner the CPD base configs set as ``runner_type``."""
import copy
import os.path as osp
from typing import Optional

from mmengine.config import Config
from mmengine.dist import is_main_process
from mmengine.hooks import EMAHook
from mmengine.model import is_model_wrapper
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

# Register mmcpd's hooks, models and datasets: a config that names this
# runner by import path needs no ``custom_imports``.
import mmcpd.datasets  # noqa: F401
import mmcpd.engine.hooks  # noqa: F401
import mmcpd.models  # noqa: F401
from mmcpd.models import DistillWrapper, unwrap_student
from mmcpd.models.loading import load_pruned_checkpoint
from mmcpd.engine.config_transform import (deploy_config,
                                           remove_from_optimizer,
                                           transform_config)
from mmcpd.engine.cpd_settings import is_cpd_hook
from mmcpd.prune.session import is_deploy_checkpoint
from mmcpd.prune.spec import CHECKPOINT_KEY
from mmcpd.utils.checkpoint import load_checkpoint_file


@RUNNERS.register_module()
class CPDRunner(Runner):
    """An mmengine Runner that applies a config's ``distill`` and ``cpd``.

    Set by the CPD base configs as ``runner_type``. Before building a plain
    :class:`~mmengine.runner.Runner`, :func:`transform_config` wraps the
    model into a DistillWrapper as ``distill`` says and appends the CPDHook
    of ``cpd`` to the config's own hooks. Besides:

    - the frozen teacher of a DistillWrapper is taken out of the optimizer
      that the config's optimizer constructor builds (any constructor adds
      every parameter, frozen or not); a teacher trained alongside
      (``train_teacher=True``) stays in it;
    - a pruned (deploy) checkpoint given as ``load_from`` (what
      ``tools/test.py CONFIG pruned_deploy.pth`` of MMPretrain and MMSeg
      does) resizes the model to its spec before its weights load;
    - after training, next to the CPDHook's deploy checkpoint, a deploy
      config (:func:`deploy_config`) is written: ``pruned_deploy.py``;
    - the transform consumes ``cpd`` and ``distill``: the runner's config,
      which mmengine dumps into the work dir, holds the CPDHook and the
      DistillWrapper they became and no field that would apply them again,
      so the dumped file re-runs in every tool, ``--resume`` included
      (docs/cpd_configs.md).
    """
    #: What the CPDHook checks before training (:mod:`.cpd_fields`).
    applies_cpd_fields = True

    @classmethod
    def from_cfg(cls, cfg: Config) -> 'Runner':
        """Build a runner from a config with ``distill`` and ``cpd`` fields.

        Args:
            cfg (Config): A training config.

        Returns:
            Runner: The runner.
        """
        cfg = copy.deepcopy(cfg)
        notes = transform_config(cfg)
        runner = super().from_cfg(cfg)
        for note in notes:
            runner.logger.info(note)
        return runner

    def build_optim_wrapper(self, optim_wrapper):
        """Build the optimizer as the config says, without the teacher."""
        optim_wrapper = super().build_optim_wrapper(optim_wrapper)
        model = self.model
        while is_model_wrapper(model):
            model = model.module
        if isinstance(model, DistillWrapper) and not model.train_teacher:
            removed = remove_from_optimizer(optim_wrapper,
                                            model.teacher.parameters())
            if removed:
                self.logger.info(f'CPDRunner: {removed} teacher parameters '
                                 'are not in the optimizer')
        return optim_wrapper

    def load_checkpoint(self,
                        filename: str,
                        map_location='cpu',
                        strict: bool = False,
                        revise_keys=((r'^module.', ''), )):
        """Load a checkpoint; a deploy checkpoint resizes the model first.

        A deploy checkpoint (``pruned_spec`` without the CPDHook's training
        state) is loaded strictly into the (student) model, resized to its
        spec; EMA models of ``EMAHook`` are rebuilt at the new size. Any
        other checkpoint loads as :meth:`Runner.load_checkpoint` does.
        """
        from mmengine.runner.checkpoint import (_load_checkpoint,
                                                _load_checkpoint_to_model)

        # read once; mmengine's "Loads checkpoint by ..." goes to the log
        checkpoint = _load_checkpoint(
            filename, map_location=map_location, logger='current')
        deploy = is_deploy_checkpoint(checkpoint)
        if deploy:
            load_pruned_checkpoint(
                unwrap_student(self.model),
                checkpoint,
                config_name=str(self.cfg.filename),
                path=filename)
            for hook in self.hooks:
                if isinstance(hook, EMAHook):  # a copy of the full model
                    hook.before_run(self)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        if not deploy:  # as Runner.load_checkpoint does
            model = self.model.module if is_model_wrapper(
                self.model) else self.model
            checkpoint = _load_checkpoint_to_model(
                model, checkpoint, strict, revise_keys=list(revise_keys))
        self._has_loaded = True
        if deploy:
            self.logger.info(
                f'Load the pruned checkpoint {filename}: the model is '
                'resized to its spec '
                f"({len(checkpoint[CHECKPOINT_KEY]['shapes'])} tensors)")
        else:
            self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint

    def resume(self, filename: str, *args, **kwargs) -> None:
        """Resume from a training checkpoint; a pruned (deploy) checkpoint
        holds no training state to resume from and is loaded instead (a
        config dumped by a resumed run keeps ``resume = True``, and
        MMPretrain's ``test.py`` hands it the checkpoint to test)."""
        checkpoint = load_checkpoint_file(filename) if osp.isfile(
            str(filename)) else {}
        if is_deploy_checkpoint(checkpoint) and \
                'optimizer' not in checkpoint:
            self.logger.info(f'CPDRunner: {filename} is a pruned model, '
                             'not a training checkpoint: loaded, not '
                             'resumed')
            self.load_checkpoint(filename)
            return
        super().resume(filename, *args, **kwargs)

    def train(self):
        """Train; then write the deploy config next to the CPDHook's
        deploy checkpoint."""
        model = super().train()
        if is_main_process():
            self._write_deploy_config()
        return model

    def _write_deploy_config(self) -> Optional[str]:
        hooks = [h for h in self.hooks if is_cpd_hook(h)]
        deploy_file = getattr(hooks[0], 'deploy_file', None) if hooks \
            else None
        if not deploy_file:
            return None
        ckpt = osp.join(self.work_dir, deploy_file)
        if not osp.isfile(ckpt):
            return None
        spec = load_checkpoint_file(ckpt)[CHECKPOINT_KEY]
        path = osp.splitext(ckpt)[0] + '.py'
        try:
            deploy_config(self.cfg, spec).dump(path)
        except Exception as err:  # a config mmengine cannot write as text
            self.logger.warning(f'CPDRunner: no deploy config written '
                                f'({type(err).__name__}: {err})')
            return None
        self.logger.info(f'CPDRunner: deploy config written to {path}: '
                         f'with it, {deploy_file} loads in any OpenMMLab '
                         'tool')
        return path
