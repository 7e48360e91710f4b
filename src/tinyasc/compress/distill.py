"""Knowledge distillation (paper §2.3, Hinton et al. 2015): the compressed student learns from the mixup
labels and from a frozen pre-trained teacher (or an ensemble) run online on the same augmented batch."""
import torch
from torch.nn import functional as nnf

from tinyasc.augment import mixup_loss
from tinyasc.errors import TinyascError

# Defaults (the paper gives no values): T = 2 softens a 10-class distribution enough to expose the
# teacher's ranking of the wrong classes without flattening it; the T² factor keeps the soft term's
# gradients on the scale of the cross-entropy's, so α = 0.5 weighs the two terms equally.
KD_ALPHA = 0.5
KD_TEMPERATURE = 2.0


def kd_loss(student_logits, teacher_logits, y_a, y_b, lam, alpha=KD_ALPHA, temperature=KD_TEMPERATURE):
    """(1 − α)·CE_mixup(student; y_a, y_b, λ) + α·T²·KL(softmax(teacher/T) ‖ softmax(student/T)),
    the KL summed over classes and averaged over the batch. Computed in float32."""
    if not 0 <= alpha <= 1 or temperature <= 0:
        raise TinyascError(f"need 0 <= kd alpha <= 1 and kd temperature > 0 (got {alpha}, {temperature})")
    student_logits = student_logits.float()
    ce = mixup_loss(student_logits, y_a, y_b, lam)
    if alpha == 0:
        return ce
    log_p_student = nnf.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = nnf.log_softmax(teacher_logits.float().detach() / temperature, dim=1)
    kl = nnf.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return (1 - alpha) * ce + alpha * temperature ** 2 * kl


class Teacher:
    """Frozen teacher: one model or an ensemble, in eval mode (no dropout, BN running statistics), no
    gradients. An ensemble's logits are the mean of its members' logits, so softmax(mean / T) is the
    normalised geometric mean of the members' tempered distributions, for any T."""

    def __init__(self, models):
        self.models = list(models)
        if not self.models:
            raise TinyascError("knowledge distillation needs at least one teacher")
        for m in self.models:
            m.eval().requires_grad_(False)

    @torch.no_grad()
    def __call__(self, x):
        for m in self.models:
            if next(m.parameters()).device != x.device:
                m.to(x.device)
        return torch.stack([m(x).float() for m in self.models]).mean(dim=0)


def distillation_loss(teacher, alpha=KD_ALPHA, temperature=KD_TEMPERATURE):
    """A `loss_fn(logits, x, y_a, y_b, lam)` for train.fit; `teacher` is a Teacher, a model or a list of
    models. The teacher sees the same augmented (rolled, masked, mixed) x as the student."""
    if isinstance(teacher, torch.nn.Module):
        teacher = Teacher([teacher])
    elif isinstance(teacher, (list, tuple)):
        teacher = Teacher(teacher)

    def loss_fn(logits, x, y_a, y_b, lam):
        return kd_loss(logits, teacher(x), y_a, y_b, lam, alpha, temperature)

    return loss_fn
