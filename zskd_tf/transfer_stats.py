"""Per class, what a crafted transfer set holds in its teacher's eyes.

A class can be well represented in the sampled targets and still be rare among the
impressions the teacher ends up labelling as it: these figures separate the two.
"""
import numpy as np


def class_breakdown(soft_labels, targets, classes, losses=None, student_logits=None):
    """Per class k (all in %, over the transfer set):

    - ``target_share``: share of the target mass on k (mean of targets[:, k]);
    - ``target_top1_share``: share of images whose target's top class is k;
    - ``teacher_top1_share``: share of images the teacher labels k (argmax of its soft
      labels);
    - ``teacher_share``: the teacher's mean soft-label mass on k;
    - ``hit_rate``: of the images whose target's top class is k, the share the teacher
      also labels k;
    - ``mean_loss`` (if ``losses``): the final crafting loss of the images crafted for
      class k (their Dirichlet class, ``classes``);
    - ``student_agreement`` (if ``student_logits``): of the images the teacher labels k,
      the share a student also labels k (on held-out impressions: whether what the
      student learnt of class k carries beyond its own transfer set).
    """
    soft_labels, targets = np.asarray(soft_labels), np.asarray(targets)
    classes = np.asarray(classes)
    if soft_labels.shape != targets.shape or soft_labels.ndim != 2:
        raise ValueError(f"soft labels {soft_labels.shape} and targets {targets.shape} "
                         "must be the same [images, classes] shape")
    if len(classes) != len(targets):
        raise ValueError(f"{len(classes)} classes for {len(targets)} images")
    k = targets.shape[1]
    target_top, teacher_top = targets.argmax(1), soft_labels.argmax(1)
    hits = [float((teacher_top[target_top == c] == c).mean() * 100.0)
            if (target_top == c).any() else None for c in range(k)]
    out = {
        "target_share": (targets.mean(0) * 100.0).tolist(),
        "target_top1_share": (np.bincount(target_top, minlength=k) / len(targets)
                              * 100.0).tolist(),
        "teacher_top1_share": (np.bincount(teacher_top, minlength=k) / len(targets)
                               * 100.0).tolist(),
        "teacher_share": (soft_labels.mean(0) * 100.0).tolist(),
        "hit_rate": hits,
    }
    if student_logits is not None:
        student_top = np.asarray(student_logits).argmax(1)
        out["student_agreement"] = [
            float((student_top[teacher_top == c] == c).mean() * 100.0)
            if (teacher_top == c).any() else None for c in range(k)]
    if losses is not None:
        losses = np.asarray(losses)
        out["mean_loss"] = [float(losses[classes == c].mean()) if (classes == c).any()
                            else None for c in range(k)]
    return out
