"""Where CPDHook reads gradients: after AMP unscaling, before clipping."""
from typing import Optional


class ClipGradTap:
    """Calls ``read`` right before ``wrapper`` clips its gradients.

    mmengine's ``OptimWrapper.step`` clips and then steps the optimizer;
    ``AmpOptimWrapper.step`` unscales, clips and then lets the GradScaler
    step it. So a ``torch.optim.Optimizer`` step pre-hook sees clipped
    gradients, and there is no hook between unscaling and clipping: this
    wraps ``_clip_grad`` of this one wrapper instance (its class is left
    alone) until :meth:`remove`. ``_clip_grad`` runs once per real step
    (``step`` runs only when ``update_params`` updates), with the
    accumulated gradient under ``accumulative_counts``.
    """

    def __init__(self, wrapper, read):
        self.wrapper = wrapper
        self._previous = vars(wrapper).get('_clip_grad')
        clip = wrapper._clip_grad

        def read_then_clip():
            read()
            clip()

        self._tapped = read_then_clip
        wrapper._clip_grad = read_then_clip

    def remove(self) -> None:
        if vars(self.wrapper).get('_clip_grad') is not self._tapped:
            return  # replaced by someone else since: leave theirs in place
        if self._previous is None:
            del self.wrapper._clip_grad
        else:
            self.wrapper._clip_grad = self._previous


def tap_clip_grad(wrapper, read) -> Optional[ClipGradTap]:
    """A :class:`ClipGradTap` if ``wrapper`` clips gradients, else None."""
    if not getattr(wrapper, 'clip_grad_kwargs', None) or not callable(
            getattr(wrapper, '_clip_grad', None)):
        return None
    return ClipGradTap(wrapper, read)
