"""Settings of a ZSKD run, each defined once: its default, its rule, its help.

``Config`` holds everything one run of the method needs. A setting left ``None`` is
filled by ``Config.resolved`` in layers: the paper's value for the data set and
transfer-set size (``paper_values``: the appendix's tables, the authors' code where the
paper is silent), then the chosen preset's (``presets``), then whatever was given
explicitly. ``Config.validate`` checks every given setting against its one rule. The
absl binaries derive their flags from these fields (``experiments.common``), so a new
setting is added here and nowhere else. ``CraftConfig`` is the crafting loop's part,
validated by the same rules. No TensorFlow here.
"""
import dataclasses
import math
import numbers

from zskd_tf import paper
from zskd_tf import presets

DATASETS = tuple(paper.SETUPS)
PRIORS = ("class_similarity", "uniform")
IMPRESSION_KINDS = ("data", "class")
PIXEL_MODES = ("minmax", "clip", "none", "clip_end")
INIT_MODES = ("uniform", "normal")
PRECISIONS = ("float32", "bfloat16")  # crafting: the teacher's compute type
# Training the student: float32, or Keras' mixed_bfloat16 policy (float32 variables,
# bfloat16 layer compute); both are Keras dtype policy names.
STUDENT_PRECISIONS = ("float32", "mixed_bfloat16")
NUM_CLASSES = 10  # every data set here
MAX_INT = 2 ** 31 - 1  # TensorFlow's int32 indices and seeds
MAX_IMPRESSIONS = 10 ** 8  # far beyond memory already (100 M x 32 x 32 floats = 400 GB)
# The paper gives no fine-tuning length; our default where nothing else was measured.
FINETUNE_EPOCHS = 200
AUGMENT_PROB = 0.5


class ConfigError(ValueError):
    """A setting breaks its rule; ``field`` names it."""

    def __init__(self, field, message):
        super().__init__(message)
        self.field = field


@dataclasses.dataclass(frozen=True)
class Rule:
    """What a setting's value must be: ``text`` completes "<name> ..." in errors."""
    text: str
    ok: object  # value -> bool
    choices: tuple = None  # the allowed values, for a rule that lists them


def _number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _integer(v, low, high):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and low <= v <= high


def count(low=1, high=MAX_INT):
    return Rule(f"must be an integer in [{low:,}, {high:,}]", lambda v: _integer(v, low, high))


def one_of(choices):
    return Rule(f"must be one of {', '.join(choices)}", lambda v: v in choices, tuple(choices))


POSITIVE = Rule("must be a finite number > 0", lambda v: _number(v) and v > 0)
NON_NEGATIVE = Rule("must be a finite number >= 0", lambda v: _number(v) and v >= 0)
PROBABILITY = Rule("must be a number in [0, 1]", lambda v: _number(v) and 0 <= v <= 1)
BOOLEAN = Rule("must be true or false", lambda v: isinstance(v, bool))
TEXT = Rule("must be a string", lambda v: isinstance(v, str) and bool(v))
BETAS = Rule("must be a non-empty list of finite numbers > 0",
             lambda v: isinstance(v, (tuple, list)) and bool(v)
             and all(_number(b) and b > 0 for b in v))


def setting(help, rule, default=None, flag=None, paper=True):
    """A ``Config`` field. ``paper``: the setting has a paper value (``paper_values``)
    and takes part in presets and in ``differences_from_paper``; ``flag``: the binaries'
    flag name if not the field's."""
    return dataclasses.field(default=default, metadata={
        "help": help, "rule": rule, "flag": flag, "paper": paper})


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of one ZSKD run. ``None`` settings take the preset's or the paper's value
    for ``dataset`` (``resolved``)."""
    dataset: str = setting("The data set: selects the paper's values and the preset's.",
                           one_of(DATASETS), "mnist", paper=False)
    preset: str = setting("Settings for the data set as a whole: " + "; ".join(
        f"{k}: {v}" for k, v in presets.DESCRIPTIONS.items()) + ". Any flag given "
        "overrides its preset value.", one_of(presets.NAMES), presets.DEFAULT, paper=False)
    teacher: str = setting("Teacher .keras file for the binaries (zskd.run takes the model "
                           "itself); the presets' files are under pretrained/.", TEXT)
    num_impressions: int = setting("Transfer-set size (>= classes x betas; default: the "
                                   "paper's headline size).", count(1, MAX_IMPRESSIONS))
    betas: tuple = setting("Dirichlet scaling factors (comma-separated, each > 0); the "
                           "impressions are split equally between them.", BETAS, flag="beta")
    prior: str = setting("Dirichlet prior: class similarity (the method) or uniform "
                         "(Table 7).", one_of(PRIORS))
    impressions: str = setting("data: Data Impressions (Dirichlet targets); class: Class "
                               "Impressions (one-hot targets, stop at a confidence drawn "
                               "from [0.55, 0.70]).", one_of(IMPRESSION_KINDS))
    craft_iterations: int = setting("Crafting iterations per impression.", count())
    craft_lr: float = setting("Crafting Adam learning rate (paper: the appendix's for the "
                              "transfer-set size).", POSITIVE)
    craft_batch_size: int = setting("Images per crafting batch: the unit of loss averaging "
                                    "and min-max renormalisation (paper: the appendix's).",
                                    count())
    parallel_batches: int = setting("Crafting batches optimised together (one shard); does "
                                    "not change the result, only speed and memory (default: "
                                    "1,000 images at once per process; 100 for CIFAR-10).",
                                    count(), paper=False)
    craft_processes: int = setting("Processes crafting shards side by side on this host, "
                                   "each with CPUs / processes threads; does not change the "
                                   "result (default: 2 on a CPU with 2+ cores, 1 with a GPU).",
                                   count(), paper=False)
    pixel: str = setting("Pixel handling after each crafting step (docs/REPRODUCTION.md).",
                         one_of(PIXEL_MODES))
    init: str = setting("Crafting's initial noise: uniform in [0, 1] or standard normal.",
                        one_of(INIT_MODES))
    image_l2: float = setting("Weight of an L2 penalty on the impressions while crafting "
                              "(0: none, as in the paper).", NON_NEGATIVE)
    craft_precision: str = setting(
        "The teacher's arithmetic while crafting: float32, or bfloat16 (mixed precision; "
        "faster on CPUs with native bf16; the stored soft labels always come from the "
        "float32 teacher; docs/PERFORMANCE.md).", one_of(PRECISIONS))
    temperature: float = setting("Softmax temperature (crafting, KD).", POSITIVE)
    student_epochs: int = setting("Distillation epochs (appendix: at most 2,000).", count())
    student_lr: float = setting("Distillation learning rate (paper: the appendix's).",
                                POSITIVE)
    batch_size: int = setting("Distillation batch size.", count())
    student_precision: str = setting(
        "The student's arithmetic while it is distilled and fine-tuned: float32 (the "
        "paper), or mixed_bfloat16 (Keras mixed precision: float32 weights, bfloat16 layer "
        "compute; the logits and every loss in float32; fast on CPUs with native bf16, "
        "e.g. AVX512-BF16 or AMX, slow elsewhere; docs/PERFORMANCE.md). The teacher stays "
        "float32.", one_of(STUDENT_PRECISIONS))
    stored_soft_labels: bool = setting(
        "Distil the un-augmented stage on the teacher's soft labels stored with the "
        "impressions (computed once from the final images, as the authors' code did) "
        "instead of running the teacher on every batch: the same loss up to float32 "
        "rounding, for less work (docs/PERFORMANCE.md). Fine-tuning on augmented images "
        "always runs the teacher.", BOOLEAN, False, paper=False)
    augment: bool = setting("Fine-tune on a mixture of impressions and augmented "
                            "impressions after distillation (Table 6).", BOOLEAN)
    finetune_epochs: int = setting("Augmented fine-tuning epochs (the paper gives none; "
                                   "docs/REPRODUCTION.md).", count(0))
    finetune_lr: float = setting("Augmented fine-tuning learning rate (appendix: 0.001).",
                                 POSITIVE)
    finetune_batch_size: int = setting("Augmented fine-tuning batch size (appendix: 5,000 for "
                                       "CIFAR-10; it gives none for MNIST and Fashion-MNIST: "
                                       "there, the distillation batch size).", count())
    augment_prob: float = setting("Share of impressions augmented per fine-tuning batch.",
                                  PROBABILITY)
    eval_every: int = setting("Log test accuracy every N epochs (monitoring only; 0: "
                              "never). Reported figures are final-epoch.", count(0), 10,
                              paper=False)
    heldout_impressions: int = setting(
        "Also craft this many held-out impressions (own targets and noise) and log the "
        "student's agreement with the teacher on them, as they are and augmented, every "
        "--eval_every epochs (every 10 if that is 0): a data-free training signal, not a "
        "stopping rule (0: off).", count(0, MAX_IMPRESSIONS), 0, paper=False)
    seed: int = setting("Seed for everything; stages derive their own seeds.", count(0), 0,
                        paper=False)

    def validate(self):
        """Raises ConfigError naming the first setting that breaks its rule."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            rule = f.metadata["rule"]
            if value is not None and not rule.ok(value):
                raise ConfigError(f.name, f"{f.name} {rule.text}, got {value!r}")
        settings = self.layered()[0]
        groups = len(settings["betas"]) if settings["impressions"] == "data" else 1
        for name in ("num_impressions", "heldout_impressions"):  # heldout: 0 is off
            n = settings[name]
            if n and n < NUM_CLASSES * groups:
                raise ConfigError(name, f"{name} must be at least classes x betas = "
                                  f"{NUM_CLASSES} x {groups}, got {n}")
        return self

    def resolved(self):
        """A copy with every ``None`` setting filled: paper, then preset, then given."""
        from zskd_tf import craft_processes  # the machine's defaults (TensorFlow, lazily)
        settings = self.layered()[0]
        if settings["parallel_batches"] is None:
            per_process = craft_processes.IMAGES_AT_ONCE[paper.SETUPS[self.dataset].teacher]
            settings["parallel_batches"] = max(1, per_process // settings["craft_batch_size"])
        if settings["craft_processes"] is None:
            settings["craft_processes"] = craft_processes.default_processes()
        return dataclasses.replace(self, **settings)

    def differences_from_paper(self):
        """{setting: {"value", "paper", "source"}} for each setting whose value differs
        from the paper preset's for this experiment (data set, size, kind of impressions,
        prior)."""
        settings, sources = self.layered()
        reference = paper_values(self.dataset, settings["num_impressions"],
                                 settings["impressions"])
        experiment = ("num_impressions", "impressions", "prior")
        return {name: {"value": settings[name], "paper": reference[name],
                       "source": sources[name]}
                for name in reference
                if name not in experiment and _differ(settings[name], reference[name])}

    def craft(self):
        """The ``CraftConfig`` of this (resolved) config."""
        return CraftConfig(**{k: getattr(self, v) for k, v in CRAFT_FIELDS.items()})

    def layered(self):
        """({setting: value}, {setting: "paper" | "preset" | "given"}): every setting
        with a paper value filled from the paper, then the preset, then the given value;
        without ``resolved``'s machine-dependent defaults (those need TensorFlow)."""
        given = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        chosen = presets.values(self.preset, self.dataset)
        # the experiment first: the appendix's values depend on it
        pick = {k: given[k] if given[k] is not None else chosen.get(k)
                for k in ("num_impressions", "impressions")}
        base = paper_values(self.dataset, pick["num_impressions"], pick["impressions"])
        settings, sources = dict(given), {}
        for name, value in base.items():
            if given[name] is not None:
                sources[name] = "given"
            elif name in chosen:
                settings[name], sources[name] = chosen[name], "preset"
            else:
                settings[name], sources[name] = value, "paper"
        if sources["finetune_batch_size"] == "paper" and \
                paper.SETUPS[self.dataset].finetune_batch_size is None:
            settings["finetune_batch_size"] = settings["batch_size"]  # the appendix has none
        return settings, sources


def _differ(a, b):
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return tuple(a) != tuple(b)
    return a != b


def paper_values(dataset, num_impressions=None, impressions="data"):
    """Every paper setting's value for ``dataset``: the appendix's for the transfer-set
    size (default: the headline size), the authors' code or our stated default where the
    paper is silent, and the paper preset's teacher file."""
    if dataset not in paper.SETUPS:
        raise ConfigError("dataset", f"dataset must be one of {', '.join(DATASETS)}, "
                          f"got {dataset!r}")
    setup = paper.SETUPS[dataset]
    n = num_impressions or paper.HEADLINE_IMPRESSIONS[dataset]
    craft = paper.craft_setup(dataset, n)
    values = {
        "teacher": None, "num_impressions": paper.HEADLINE_IMPRESSIONS[dataset],
        "betas": paper.BETAS, "prior": "class_similarity", "impressions": "data",
        "craft_iterations": craft.iterations, "craft_lr": craft.lr,
        "craft_batch_size": craft.batch_size, "pixel": "minmax", "init": "uniform",
        "image_l2": 0.0, "craft_precision": "float32", "temperature": paper.TEMPERATURE,
        "student_epochs": setup.student_max_epochs, "student_lr": craft.student_lr,
        "batch_size": paper.BATCH_SIZE, "student_precision": "float32", "augment": True,
        "finetune_epochs": FINETUNE_EPOCHS,
        "finetune_lr": setup.finetune_lr,
        "finetune_batch_size": setup.finetune_batch_size or paper.BATCH_SIZE,
        "augment_prob": AUGMENT_PROB,
        **presets.values("paper", dataset),
    }
    if impressions == "class":
        values["craft_lr"], values["student_lr"] = paper.CLASS_IMPRESSIONS.get(
            (dataset, n), (craft.lr, craft.student_lr))
        values["craft_batch_size"] = 1
    return values


def settings():
    """The fields of ``Config``, in order."""
    return dataclasses.fields(Config)


def flag_name(field):
    return field.metadata["flag"] or field.name


# CraftConfig field -> the Config setting it comes from (and whose rule it obeys).
CRAFT_FIELDS = {"lr": "craft_lr", "batch_size": "craft_batch_size",
                "iterations": "craft_iterations", "temperature": "temperature",
                "pixel": "pixel", "init": "init", "image_l2": "image_l2",
                "precision": "craft_precision"}


@dataclasses.dataclass(frozen=True)
class CraftConfig:
    """How to craft (``impressions.Crafter``).

    pixel: after each step, ``minmax`` renormalises each batch to [0, 1] (the authors'
    code), ``clip`` clips to [0, 1], ``none`` leaves pixels free, ``clip_end`` leaves them
    free and clips to [0, 1] once at the end (the public TF1 and PyTorch reproductions).
    init: ``uniform`` noise in [0, 1] (the authors' code) or standard ``normal`` noise
    (the reproductions). image_l2: weight w of a penalty w * mean over a batch's images of
    sum(x ** 2) / 2 added to its loss (the TF1 reproduction used 1e-3; 0 in the paper).
    precision: the teacher's compute type while crafting, ``float32`` or ``bfloat16``
    (fast on CPUs with native bf16, e.g. AVX512-BF16 or AMX; docs/PERFORMANCE.md).
    beta1, beta2, epsilon: TF1 Adam's defaults, as in the authors' code.
    """
    lr: float
    batch_size: int = 100
    iterations: int = 1500
    temperature: float = paper.TEMPERATURE
    pixel: str = "minmax"
    init: str = "uniform"
    image_l2: float = 0.0
    precision: str = "float32"
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8

    def __post_init__(self):
        rules = {f.name: f.metadata["rule"] for f in settings()}
        for name, setting_name in CRAFT_FIELDS.items():
            value = getattr(self, name)
            if not rules[setting_name].ok(value):
                raise ConfigError(setting_name,
                                  f"{name} {rules[setting_name].text}, got {value!r}")
