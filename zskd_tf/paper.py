"""The paper's settings and reported numbers, as data, in one place.

Sources: Nayak et al., ICML 2019, sections 4.1-4.5, Tables 1-3, 6, 7 and the appendix
("Details of Hyperparameters Used in ZSKD").
"""
import dataclasses

from zskd_tf import records

TEMPERATURE = 20.0
BETAS = (1.0, 0.1)
DIRICHLET_EPS = 1e-4
KD_LAMBDA = 0.3
CLASS_IMPRESSION_CONFIDENCE = (0.55, 0.70)
BATCH_SIZE = 512


@dataclasses.dataclass(frozen=True)
class DataSetup:
    """Per data set: models, training set size and the real-data training settings."""
    teacher: str
    student: str
    train_size: int
    teacher_epochs: int
    teacher_lr: float
    student_kd_lr: float
    student_di_lr: float          # default student LR when crafting from DIs
    finetune_lr: float            # augmented fine-tuning (appendix: 0.001 everywhere)
    student_max_epochs: int = 2000
    # Augmented fine-tuning batch: the appendix gives 5,000 for CIFAR-10 only; None: the
    # distillation batch.
    finetune_batch_size: int = None


SETUPS = {
    "mnist": DataSetup("lenet5", "lenet5_half", 60000, 200, 1e-3, 1e-2, 1e-2, 1e-3),
    "fashion_mnist": DataSetup("lenet5", "lenet5_half", 60000, 200, 1e-3, 1e-2, 1e-2, 1e-3),
    "cifar10": DataSetup("alexnet", "alexnet_half", 50000, 1000, 1e-3, 1e-3, 1e-3, 1e-3,
                         finetune_batch_size=5000),
}


@dataclasses.dataclass(frozen=True)
class CraftSetup:
    """Appendix settings for one transfer-set size: DI crafting batch, iterations, Adam LR,
    and the student's learning rate when distilling on those DIs."""
    batch_size: int
    iterations: int
    lr: float
    student_lr: float


# (data set, number of DIs) -> settings, copied from the appendix.
CRAFT = {
    ("mnist", 600): CraftSetup(10, 1500, 0.1, 1e-2),
    ("mnist", 3000): CraftSetup(10, 1500, 0.1, 1e-2),
    ("mnist", 6000): CraftSetup(100, 1500, 1.0, 1e-2),
    ("mnist", 12000): CraftSetup(100, 1500, 2.0, 1e-2),
    ("mnist", 24000): CraftSetup(100, 1500, 3.0, 1e-2),
    ("fashion_mnist", 600): CraftSetup(10, 1500, 3.0, 1e-2),
    ("fashion_mnist", 3000): CraftSetup(10, 1500, 3.0, 1e-3),
    ("fashion_mnist", 6000): CraftSetup(100, 1500, 1.0, 1e-4),
    ("fashion_mnist", 12000): CraftSetup(100, 1500, 1.0, 1e-2),
    ("fashion_mnist", 24000): CraftSetup(10, 1500, 1.0, 1e-2),
    ("fashion_mnist", 48000): CraftSetup(100, 1500, 3.0, 1e-2),
    ("cifar10", 500): CraftSetup(5, 1500, 0.01, 1e-3),
    ("cifar10", 2500): CraftSetup(25, 1500, 0.01, 1e-3),
    ("cifar10", 5000): CraftSetup(50, 1500, 0.01, 1e-3),
    ("cifar10", 10000): CraftSetup(100, 1500, 0.01, 1e-3),
    ("cifar10", 20000): CraftSetup(100, 1500, 0.01, 1e-3),
    ("cifar10", 40000): CraftSetup(100, 1500, 0.01, 1e-3),
}

# Class Impressions: (data set, number of CIs) -> (crafting LR, student LR).
CLASS_IMPRESSIONS = {
    ("mnist", 600): (2.0, 1e-2), ("mnist", 3000): (0.01, 1e-2),
    ("mnist", 6000): (0.1, 1e-2), ("mnist", 12000): (0.01, 1e-2),
    ("mnist", 24000): (0.1, 1e-3),
    ("fashion_mnist", 600): (0.01, 1e-3), ("fashion_mnist", 3000): (0.1, 1e-3),
    ("fashion_mnist", 6000): (2.0, 1e-3), ("fashion_mnist", 12000): (1.0, 1e-3),
    ("fashion_mnist", 24000): (0.01, 1e-2), ("fashion_mnist", 48000): (0.5, 1e-3),
    ("cifar10", 500): (0.1, 1e-3), ("cifar10", 2500): (0.1, 1e-2),
    ("cifar10", 5000): (0.1, 1e-2), ("cifar10", 10000): (2.0, 1e-3),
    ("cifar10", 20000): (1.0, 1e-3), ("cifar10", 40000): (0.1, 1e-2),
}

# The transfer-set size each data set's headline ZSKD result uses (Tables 1-3).
HEADLINE_IMPRESSIONS = {"mnist": 24000, "fashion_mnist": 48000, "cifar10": 40000}

# Reported test accuracies (%), Tables 1-3, 6, 7: teacher CE, student CE, student KD,
# ZSKD, ZSKD + augmentation, ZSKD with the uniform prior.
_ROWS = (records.TEACHER_CE, records.STUDENT_CE, records.STUDENT_KD, records.ZSKD,
         records.ZSKD_AUGMENTED, records.ZSKD_UNIFORM_PRIOR)
REPORTED = {
    "mnist": dict(zip(_ROWS, (99.34, 98.92, 99.25, 96.98, 98.77, 95.16))),
    "fashion_mnist": dict(zip(_ROWS, (90.84, 89.43, 89.66, 69.37, 79.62, 56.24))),
    "cifar10": dict(zip(_ROWS, (83.03, 80.04, 80.08, 56.80, 69.56, 49.23))),
}


def reported_zskd(dataset, num_impressions, impressions="data", prior="class_similarity"):
    """The paper's (ZSKD %, ZSKD + augmentation %) for this setting; None where it
    reports none (other transfer-set sizes, class impressions, augmentation with the
    uniform prior)."""
    reported = REPORTED[dataset]
    if num_impressions != HEADLINE_IMPRESSIONS[dataset] or impressions != "data":
        return None, None
    if prior == "uniform":
        return reported[records.ZSKD_UNIFORM_PRIOR], None
    return reported[records.ZSKD], reported[records.ZSKD_AUGMENTED]


def craft_setup(dataset, num_impressions):
    """The appendix's crafting settings for a data set and transfer-set size.

    Sizes the appendix does not list take the setting of the nearest listed size.
    """
    sizes = sorted(n for d, n in CRAFT if d == dataset)
    if not sizes:
        raise ValueError(f"no crafting settings for data set {dataset!r}; "
                         f"choose one of {sorted({d for d, _ in CRAFT})}")
    nearest = min(sizes, key=lambda n: (abs(n - num_impressions), n))
    return CRAFT[(dataset, nearest)]


def transfer_set_sizes(dataset):
    """The transfer-set sizes the appendix gives settings for (Fig. 2, 3: 1% to 40% of
    MNIST's training set, 1% to 80% of Fashion-MNIST's and CIFAR-10's)."""
    return tuple(sorted(n for d, n in CRAFT if d == dataset))


# The table reporting each data set's real-data rows and headline ZSKD (with augmentation).
TABLE_OF = {"mnist": 1, "fashion_mnist": 2, "cifar10": 3}

# Rows of Tables 1-3 the paper quotes from other work (not run here): (row, %).
CITED = {
    "mnist": (("Kimura et al., 2018 (200 original data)", 86.70),
              ("Lopes et al., 2017 (uses meta data)", 92.47)),
    "fashion_mnist": (("Kimura et al., 2018 (200 original data)", 72.50),),
    "cifar10": (),
}

# Figures 2 and 3 are plots: the text gives no numbers for their points. Only the
# headline size's Data Impressions point is a reported number (Table 6, without
# augmentation; reported_zskd).
FIGURE_VALUES = "plotted only: the paper's text gives no numbers for these points"

# Appendix Tables 4 and 5, layer by layer: (layer, what the table says, output shape or
# None where the table gives none). Layer names follow the tables' numbering, as in
# zskd_tf.models; the softmax layer is part of the loss there (the models output logits).
_TN, _RN = "truncated normal 0.1", "random normal 0.01"


def _lenet_table(c1, c3):
    flat = 5 * 5 * c3
    return (
        ("conv1", f"Convolution 5x5x1, {c1} filters, stride 1, VALID, ReLU ({_TN})",
         (28, 28, c1)),
        ("pool2", "Max pooling, VALID", (14, 14, c1)),
        ("conv3", f"Convolution 5x5x{c1}, {c3} filters, stride 1, VALID, ReLU ({_TN})",
         (10, 10, c3)),
        ("pool4", "Max pooling, VALID", (5, 5, c3)),
        ("flatten", "Flatten", (flat,)),
        ("fc5", f"Fully connected ({flat}, 120), ReLU ({_TN})", (120,)),
        ("fc6", f"Fully connected (120, 84), ReLU ({_TN})", (84,)),
        ("fc7", f"Fully connected (84, 10), logits ({_TN})", (10,)),
        ("softmax8", "Softmax", None),
    )


def _alexnet_table(c1, c5, c9, c11, c13, f16, f19):
    lrn = "Local response normalisation, depth radius 2, alpha 1e-4, beta 0.75, bias 1"
    pool = "Max pooling 3x3, stride 2, VALID"

    def conv(k, cin, cout, bias):
        return (f"Convolution {k}x{k}x{cin}, {cout} filters, stride 1, SAME, ReLU, "
                f"bias {bias} ({_RN})")
    return (
        ("conv1", conv(5, 3, c1, 0), (32, 32, c1)),
        ("lrn2", lrn, None),
        ("pool3", pool, (15, 15, c1)),
        ("bn4", "Batch norm", None),
        ("conv5", conv(5, c1, c5, 1), (15, 15, c5)),
        ("lrn6", lrn, None),
        ("pool7", pool, (7, 7, c5)),
        ("bn8", "Batch norm", None),
        ("conv9", conv(3, c5, c9, 0), (7, 7, c9)),
        ("bn10", "Batch norm", None),
        ("conv11", conv(3, c9, c11, 1), (7, 7, c11)),
        ("bn12", "Batch norm", None),
        ("conv13", conv(3, c11, c13, 1), (7, 7, c13)),
        ("pool14", pool, (3, 3, c13)),
        ("bn15", "Batch norm", None),
        ("flatten", "Flatten", (9 * c13,)),
        ("fc16", f"Fully connected ({9 * c13}, {f16}), ReLU ({_RN})", (f16,)),
        ("dropout17", "Dropout 0.5", None),
        ("bn18", "Batch norm", None),
        ("fc19", f"Fully connected ({f16}, {f19}), ReLU ({_RN})", (f19,)),
        ("dropout20", "Dropout 0.5", None),
        ("bn21", "Batch norm", None),
        ("fc22", f"Fully connected ({f19}, 10), logits ({_RN})", (10,)),
        ("softmax23", "Softmax", None),
    )


ARCHITECTURES = {
    "lenet5": _lenet_table(6, 16),
    "lenet5_half": _lenet_table(3, 8),
    "alexnet": _alexnet_table(48, 128, 192, 192, 128, 512, 256),
    "alexnet_half": _alexnet_table(24, 64, 96, 96, 64, 256, 128),
}
# Appendix table -> (teacher, student) it describes.
ARCHITECTURE_TABLES = {4: ("lenet5", "lenet5_half"), 5: ("alexnet", "alexnet_half")}
# Parameter counts stated in the text (sections 4.1, 4.3).
PARAMETERS = {"lenet5": 61706, "lenet5_half": 35820, "alexnet": 1.65e6,
              "alexnet_half": 7.23e5}
