"""The paper's ablations, asked again with one command: ``mobilevit ablate STUDY``.

Four studies from the paper's appendix, each a YAML file in ``mobilevit/recipes/ablations/`` (``configs/ablations/`` in the checkout) that names
the classification recipe it starts from and, per variant, the value of the one knob it turns:

- ``weight-decay``: AdamW weight decay 0.1 / 0.01 / 0.001 / 0.0001;
- ``skip-connection``: the MobileViT block's concat of its input before the fusion conv, on / off;
- ``patch-size``: the patch sizes of the three MobileViT stages, with batch-1 latency beside
  the accuracy;
- ``ema-label-smoothing``: EMA on / off x label smoothing 0 / 0.1.

Every variant is trained with everything else equal (same recipe, same data, same seeds: the
data order and augmentation draws of seed k are the same in every variant, and so is the
model initialisation where the variants share an architecture), one run per (variant, seed)
in ``OUT/<variant>/seed<k>/`` (a normal training run folder). A study writes ``study.json``
(its plan and the command that made it) first, trains the runs one after another, and at the
end ``results.csv`` / ``results.md`` (mean and spread over seeds), ``runs.csv`` (one row per
run), ``curves.csv`` (every run's epochs), ``<variant>/curves.png`` and one figure
``<study>.png`` in the manner of the paper.

Rerunning the same command resumes an interrupted study: finished runs are kept, a stopped run
continues from its ``resume.pt``, the rest start. ``--replot`` redraws the tables and figures of
a finished study from its files, without training. Everything that can be wrong with a request
(unknown study or variant, a patch larger than its stage's feature map, contradictory flags, an
override of the studied knob itself, an output folder made with other settings) is an
`AblationError` raised before any training.
"""

from .plan import Plan, RunSpec, StudyOptions, check_patch_sizes, command_line, feature_map_sides, plan_study
from .report import replot, write_outputs
from .run import run_study
from .studies import DEFAULT_OUT, KINDS, AblationError, StudyKind, StudySpec, Variant, load_study, study_dirs

__all__ = [
    "DEFAULT_OUT",
    "KINDS",
    "AblationError",
    "Plan",
    "RunSpec",
    "StudyKind",
    "StudyOptions",
    "StudySpec",
    "Variant",
    "check_patch_sizes",
    "command_line",
    "feature_map_sides",
    "load_study",
    "plan_study",
    "replot",
    "run_study",
    "study_dirs",
    "write_outputs",
]
