"""Names in run records (``results.json``, ``zskd.json``) and stage files, defined once.

A training stage writes ``WORKDIR/<stage>.keras``, ``<stage>_history.csv`` and
``tb/<stage>/``; its record holds the final-epoch test accuracy under ``TEST_ACCURACY``
and, labelled as what it is, the best monitored epoch's under ``SELECTED_ON_TEST``.
"""
# Stages (and their keys in a run's record).
TEACHER = "teacher"
STUDENT = "student"                      # distillation on the transfer set
STUDENT_AUGMENTED = "student_augmented"  # fine-tuning on it and its augmentations
STUDENT_KD = "student_kd"                # Student-KD on real data (eq. 1)
STUDENT_STAGES = (STUDENT, STUDENT_AUGMENTED)
CRAFTING = "crafting"                    # transfer_set/ (and heldout_set/)
ZSKD_STAGES = (CRAFTING, *STUDENT_STAGES)  # a ZSKD run's stages, in order

# Keys of an evaluation.
TEST_ACCURACY = "test_accuracy"
SELECTED_ON_TEST = "max_test_accuracy_over_epochs_selected_on_test"
SELECTION = "final epoch; no model selection on the test set"

# The paper's rows (keys of paper.REPORTED and of the ZSKD binaries' summaries).
TEACHER_CE = "teacher_ce"
STUDENT_CE = "student_ce"
ZSKD = "zskd"
ZSKD_AUGMENTED = "zskd_augmented"
ZSKD_UNIFORM_PRIOR = "zskd_uniform_prior"
# stage -> the paper's row its accuracy is set beside
ZSKD_ROWS = {STUDENT: ZSKD, STUDENT_AUGMENTED: ZSKD_AUGMENTED}


def summary(result, teacher_source, rows=None):
    """A run's summary: the final-epoch test accuracy of the teacher and of each student
    stage (None for a stage not run; ``rows`` renames stages, e.g. ``ZSKD_ROWS``), how
    they were selected, the whole ``result``, and where the teacher came from."""
    rows = rows or {}
    accuracy = {rows.get(stage, stage): result.get(stage, {}).get(TEST_ACCURACY)
                for stage in (TEACHER, *STUDENT_STAGES)}
    return {TEST_ACCURACY: accuracy, "selection": SELECTION, **result,
            TEACHER: {**result[TEACHER], "source": teacher_source}}
