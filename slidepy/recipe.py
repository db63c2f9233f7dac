"""The automatic recipe: a full config from the training data's shape and a time budget, so that
`slidepy train --train FILE --test FILE [--time-budget 5m]` needs no config file.

Every choice is a rule over the data's shape (samples B, features F, labels N, non-zeros per
sample, labels per sample) and the time budget, stated here and in the README; none is tuned to a
particular file. The resolved config is written into the run directory like any other, so a run
can be repeated and edited (`slidepy train --config RUN/config.yaml`).

* Output layer. Up to EXACT_LABELS labels, every label is computed (`all`): the exact softmax costs
  N x hidden per sample, no more than the sparse path's selection and bookkeeping would. Above it,
  `lsh` with the k-means cluster index and a budget of 4 sqrt(N) neurons (multiple of 64, within
  [256, 4096]): the hard negatives a sample needs grow far slower than N, and sqrt(N) also
  balances the index, whose 2 x budget centroids cost what the budget's neurons cost (it gives
  2.2-2.8% at 2-5 x 10^4 labels, where 2% held recall@10 >= 0.9 in measurement, and SLIDE's 0.5%
  at 670K labels). On DebianDeps (22,875 labels; bench/README.md, "what did not help") P@1 stopped rising
  by 2.5 sqrt(N) and P@5 did not: 256, 384, 640 and 1,024 neurons scored P@1 0.756, 0.761, 0.761,
  0.761 and P@5 0.403, 0.407, 0.411, 0.413, in 53, 68, 102 and 159 s of steps.
* Rebuilds: the cluster index re-assigns every row at a rebuild, N x C x (HIDDEN + 1)
  multiply-adds in one BLAS product (0.6 s at 50,000 labels on 2 cores, ~2 s at 10^5). So that no
  step stalls for it, a rebuild larger than ASSIGN_MACS_PER_STEP (about a quarter second there)
  is spread over as many steps as it takes to keep each step's share below that, at most the
  first rebuild interval (`rebuild.spread_steps`); not above clusters.FULL_ASSIGN_MACS, where
  rebuilds move rows among neighbouring clusters only. Spread over 10 or 50 steps, DebianNextWord
  kept its recall@10 (0.976 / 0.983) and its 1-epoch P@1 within run-to-run noise (0.155 both).
  The intervals between rebuilds start at REBUILD_INTERVAL steps and grow 1.3x per rebuild up to
  a cap, REBUILD_MAX_INTERVAL (300) or, where a rebuild costs more, as many steps as keep the
  rebuilds to REBUILD_SHARE (10%) of the steps' time (rebuild_max_interval; at most
  REBUILD_INTERVAL_LIMIT). A rebuild's BLAS product runs at about BLAS_ADVANTAGE (4) times the
  multiply-adds a second of a training step's scattered rows (DebianNextWord: 46 G in 0.65 s
  against 177 M in 11 ms; 10^5 labels: 131 G in 1.6 s against 252 M in 12 ms). At 300 the
  rebuilds took 17% of DebianNextWord's recipe (19.8 of 117.6 s) and 35% at 10^5 labels; with
  the cap at 600 DebianNextWord's two passes scored the same (0.1661 / 0.0604 against 0.1654 /
  0.0606, recall@10 0.937 against 0.932) for 14.2 instead of 19.8 s of rebuilds; at the rule's
  650, 100,000 of its samples (7 passes) 0.1481 / 0.0540 against 0.1473 / 0.0540 at 300, in 60.9 +
  11.0 against 69.5 + 15.9 s; the 10^5-label generated set under a 120 s budget, at the rule's
  1,302, 0.7068 / 0.1999 against 0.7054 / 0.1983 (7,348 steps and 27.7 s of rebuilds against
  6,582 and 41.7 s). The cap leaves the ramp's early rebuilds, as dear as the later ones: where
  they would take more than RAMP_SHARE_LIMIT of a short run's steps' time, the first interval
  grows instead (first_rebuild_interval).
* Hidden layer: HIDDEN units with inverted dropout on their outputs. Dropout grows with the passes
  the run makes over the data, because over-fitting does: none for a single pass, rising linearly
  to MAX_DROPOUT at FULL_DROPOUT_EPOCHS passes and more. Without dropout, width over-fitted: on
  DebianDeps 512 and 1,024 units scored below 128 (0.713, 0.664 against 0.728 at 120 s). With
  dropout 0.5, 512 units beat 128 on every set measured (test P@1 / P@5, same epochs and lr):
  Bibtex 0.652 / 0.292 against 0.619 / 0.283, Delicious 0.672 / 0.579 against 0.662 / 0.561,
  DebianDeps 0.732 / 0.402 against 0.728 / 0.379. The cost is time: per sample the network does
  about HIDDEN x (non-zeros + active outputs) multiply-adds. And memory: layer 0 keeps features x
  HIDDEN weights with their gradient and Adam moments (16 bytes each; 16 GB at 2 x 10^6
  features), so where the run's estimate (memory.py) would pass MEMORY_SHARE (75%) of the memory
  available, the hidden layer is halved until it fits, down to MIN_HIDDEN (fit_width).
* Optimiser: Adam, batch 128, decayed linearly to 0 over the run (over the time budget when one
  is given): a run that stops on a time budget then ends at a small step size. The learning rate
  is LR (2e-3), FEW_PASSES_LR (4e-3) when the run makes at most FEW_PASSES passes, and
  ONE_PASS_LR (5e-3) for a single pass, which ramps it up over the first WARMUP_SHARE (2.5%) of
  its steps, so that the larger rate does not meet Adam's first, noisiest moment estimates at
  full size. DebianNextWord, 1 pass (3,907 steps), seeds 0 / 1 / 2: 4e-3 without warm-up 0.1540 /
  0.1538 / 0.1557 (0.1556 in another run of seed 0); 5e-3 with 200 warm-up steps 0.1569 / 0.1573
  / 0.1566 (and 0.1574); with 100, 0.1581 / 0.1579 / 0.1575 (6e-3 with 200: 0.1568; with 400:
  0.1558). Two passes did not gain from it: 0.1657 with 5% warm-up and 0.1646 with 2.5%, against
  0.1662-0.167 at 4e-3 without.
  Why the passes: lazy Adam moves an output row by about lr each step that touches it, and in one
  or two passes a rare label's row is touched only a few times, so it needs the larger steps; over
  many passes the larger steps over-fit the frequent labels instead. Measured (test P@1 / P@5):
  DebianNextWord, 2 passes, 0.161 / 0.058 at 2e-3 and 0.167 / 0.060 at 4e-3 (1 pass: 0.147 and
  0.156; 8e-3 gave 0.154; all without warm-up; 5e-3 with 5% warm-up: 0.166 / 0.061); DebianDeps,
  15 passes, 0.749 / 0.404 at 2e-3 and 0.739 / 0.416 at 4e-3; 8.1 passes (60 s) 0.760 / 0.400
  at 2e-3 and 0.751 / 0.411 at 4e-3; 4.2-4.7 passes (30 s) 0.749 / 0.385 at 2e-3 and 0.758 /
  0.397 at 4e-3 (dropout 0.3 instead of 0.5 changed neither). But on 150,000 DebianNextWord
  samples (3 positives a label), 5 passes scored 0.1246 / 0.0554 at 4e-3 against 0.1486 / 0.0547
  at 2e-3, its P@1 falling from epoch 3 on: where the larger rate stops paying depends on more
  than the passes, so it stays at FEW_PASSES 2, where every set measured gained from it.
  (At 120 s on DebianDeps 2e-3 decayed matched a constant 1e-3: 0.7278 vs 0.7273.)
* Length: without a time budget, TARGET_STEPS optimizer steps rounded up to whole epochs, within
  [1, MAX_EPOCHS] epochs. On DebianDeps P@1 peaked after ~3,000-5,000 steps and then slowly fell
  (over-fitting) while P@5 still rose. Where every label is scored (`all`), at most
  MAX_EXACT_EPOCHS, at EXACT_LR: the exact softmax moves every output row at every step, where a
  sampled layer moves a row only in the steps that pick it, so its rows reach in fewer, larger
  steps what a sampled layer's reach in more. Bibtex and Delicious (both `all`, 20 passes at 0.002
  by the rules for a sampled layer) scored the same after 10 passes as after 20 within a seed's
  spread, and the same again or better after 5 at 0.006, in a quarter of the steps' time (test P@1
  / P@5, means of seeds 0, 1, 2, leaves and votes on; bench/measured-2026-12-08/exact-passes/):
  Bibtex 0.6555 / 0.2988 (20 passes), 0.6577 / 0.2999 (10), 0.6571 / 0.2991 (5 at 0.006);
  Delicious 0.6935 / 0.5926, 0.6918 / 0.5903, 0.6981 / 0.5906. 5 passes at 0.002 lost (Delicious,
  seeds 0 and 1: 0.6829 / 0.5809), at 0.004 and 0.008 less (0.6897 / 0.5892, 0.6890 / 0.5902;
  Bibtex 0.6537 / 0.2989, 0.6531 / 0.2970). Bibtex's config had found 4 passes at 0.006 on its own.
  The cost: on a generated third shape (2,000 labels, 40 positives a label) 20 passes still gained
  0.3-0.4 P@3 / P@5 points over 10 at 0.002 and over 5 at 0.006 (those two level again), for about
  3x their time; the 5 passes stayed 3.7 P@5 points over both trees (exact-passes/ section 3).
  With a time budget, training stops when it is spent, and
  the passes that the rules above follow are the ones the budget allows: the CLI first trains a
  throwaway copy of the network for a moment (calibrate.py) and the recipe counts the passes at
  that rate, less REBUILD_SHARE for the rebuilds, which the trial leaves out
  (passes_in_budget). Planned from the steps instead, DebianNextWord under 60 s trained one pass
  with the settings for two: 0.1549-0.1559 P@1 against 0.1596-0.1637 with those for one
  (bench/measured-2026-12-06/time-budget-passes/).
* Prediction: the network's softmax blended with the label votes of each sample's 25 nearest
  training samples in its last hidden space, each counting exp(cosine / 0.05) (`model.neighbours`,
  see neighbours.py), when the bank of training vectors holds at most NEIGHBOUR_BANK_FLOATS floats
  (128 MB: 65,536 samples at 512 units). Its cost is a product with the bank per prediction, S x D
  multiply-adds against exact scoring's N x D. So a larger bank is kept whole only while it costs
  at most BANK_COST_RATIO (2) times exact scoring (S <= 2 N) and fits MAX_BANK_FLOATS (1 GB);
  past that a training set gets a bank of NEIGHBOUR_BANK_FLOATS' samples drawn at random
  (`model.neighbours.bank_samples`), at the votes' least share MIN_VOTES, as long as a label keeps
  MIN_BANK_POSITIVES (2.5) positives in it on average: a sampled bank is a noisier vote. The
  whole bank where it is cheap: on a generated set of 150,000 tf-idf samples and 100,000 labels
  (2.6 a sample, 3.9 positives a label; bench/measured-2026-12-07/votes-bank/) a sample of the bank
  would have held 1.7 positives a label, and the votes were off: the recipe scored P@1 / P@3 / P@5
  0.7969 / 0.4129 / 0.2553 against PECOS' 0.8830 / 0.4682 / 0.2928. The same network with the
  whole bank's votes (0.7 of the score) scored 0.9242 / 0.5405 / 0.3530 on 5,000 of its test
  samples (0.7974 / 0.4177 / 0.2580 without), for 8.2 s of prediction instead of 5.2.
  Measured on DebianDeps' final network (test P@1 / P@5; alone 0.7475 / 0.4041, whole bank at 0.7
  0.7613 / 0.4130): half the bank (5.1 positives a label) 0.7539 / 0.4083 at
  0.3 and 0.7585 / 0.4039 at 0.7; a quarter (2.6) 0.7534 / 0.4057 at 0.3 and 0.7522 / 0.3936 at
  0.7. On a generated bag of item ids (100,000 samples, 50,000 labels, 6.4 positives a label; the
  recipe's network under 90 s alone 0.4780 / 0.1454): 65,536 of them (4.2 a label) at 0.3
  0.5070 / 0.1490, 32,768 (2.1) 0.4995 / 0.1441, the whole set 0.5122 / 0.1518
  (bench/measured-2026-12-07/transfer-items-tags/). So P@1 gains down to 2 positives a label and
  P@5 down to 2.6, and the votes stay on from 2.5. DebianNextWord keeps them off: 500,000
  samples at 10 positives a label leave 1.3 a label in 65,536, and even its whole bank moved it
  0.1559 -> 0.1576 P@1 but 0.0575 -> 0.0558 P@5 after one epoch, for a final evaluation of 461 s
  instead of 21 s.
  The votes' share of the score follows how much each output row had to learn from: a label's
  row is fitted to its m positive samples, so its error shrinks like 1 / sqrt(m), where m is the
  mean positives per label (label slots / labels). The share is VOTES_SCALE / sqrt(m) within
  [MIN_VOTES, MAX_VOTES]: 0.7 on DebianDeps (m 10), 0.3 on Bibtex (m 73) and Delicious (m 250).
  Measured on the final networks of the shipped configs (test P@1 / P@5, two seeds each, the
  network alone -> votes at 0.3 -> at 0.7): DebianDeps 0.7465 / 0.4036 -> 0.7539 / 0.4130 ->
  0.7621 / 0.4135 and 0.7436 / 0.4047 -> 0.7527 / 0.4133 -> 0.7606 / 0.4139; Bibtex 0.6529 /
  0.2913 -> 0.6584 / 0.2964 -> 0.6517 / 0.2932; Delicious 0.6728 / 0.5739 -> 0.6889 / 0.5873 ->
  0.6841 / 0.5835 (seed 1 of each alike). k and the temperature did best over all three sets, not
  per set: against the first votes (k 10, each neighbour in proportion to its cosine, weight 0.3)
  they add 0.3 P@1 and 0.3 P@5 on average over the six networks.
  The neighbours are found in the space, hidden or input, whose votes alone rank a true label
  first for more of 1,000 training samples left out of their own vote (`space: auto`, see
  neighbours.py). That count favours the hidden space, trained on those samples, so the input
  space wins only where it is clearly better: not on the shipped sets (leave-one-out P@1 hidden /
  input: Bibtex 0.89 / 0.60, Delicious 0.72 / 0.67, DebianDeps 0.81 / 0.52), but on a generated
  long tail of 1.2 positives a label (0.60 / 0.65), where it took the recipe's test P@1 under 90 s
  from 0.418 to 0.624, past Omikuji's 0.529 (bench/measured-2026-12-07/input-votes/).
* Input scale: the factor that brings the training rows' mean L2 norm into [1, 8] (1 within
  it; `model.input_scale`, model.input_scale_for): the init and the rates above were measured on
  rows of norm 1 to 8, and rows 20x outside cost Bibtex up to 7 points of P@1. A single pass
  raises the lower edge to ONE_PASS_MIN_NORM (3), for the reason it takes the larger learning
  rate: in one pass most input rows (features) are touched a few times, and a larger input
  scale is a larger step for layer 0 alone (Engine.input_scale). DebianNextWord (norm 1), its
  config for 1 epoch (P@1 / P@3 / P@5): 0.1574 / 0.0831 / 0.0578 at scale 1, 0.1616 at 2, 0.1623 /
  0.0837 / 0.0588 and 0.1622 / 0.0841 / 0.0588 at 3 (seeds 0, 1), 0.1625 at 4, 0.1586 at 8,
  0.1513 at 16. Two passes gained little or lost (the recipe's: 0.1667 / 0.0867 / 0.0604 at 1,
  0.1681 / 0.0861 / 0.0605 at 3; the config's 2 epochs at lr 0.005: 0.1650 / 0.0873 / 0.0609 at
  1, 0.1619 / 0.0852 / 0.0600 at 3) and more passes lose P@1 with it (DebianDeps' 15: -0.9 at
  norm 2), so they keep the band.
* Evaluation: EVALS_PER_RUN (10) evaluations over the run on up to 2,000 test samples (for the
  curve), then the whole test set at the end; LSH recall diagnostics on 256 samples. Those along
  the run are skipped while they have taken more than EVAL_SHARE (10%) of the training seconds
  (`eval.max_share`): with the votes an evaluation recomputes the bank of training vectors, and on
  small sets or short budgets ten of them cost a large part of the run (Bibtex's recipe: 1.4 s of
  evaluations for 3.1 s of training; DebianDeps under 30 s: 13 of 1.5 s each).
* Checkpoints: every CHECKPOINT_EVERY_S (10 minutes) of training, and at the end; Ctrl-C and
  SIGTERM save as well, so only a hard kill loses work, at most that much. A checkpoint holds the
  weights and both Adam moments, 12 bytes a parameter, so its cost grows with the input features
  and the labels, not with the run: 2.5 GB for 300,000 features and 100,000 labels, 12-16 s to
  write on the development VM, where a checkpoint at each quarter of a 2-minute run made it take
  341 s of wall time instead of 256 (bench/measured-2026-12-05/recipe-100k-labels/).
* Re-ranking: per-label linear leaves over the input rows, fitted on the final network's own
  shortlists and on random samples, re-rank each prediction's top 50 or more (see reranker.py): the
  trees' per-label linear models beside the network's low-rank one. Their share of the blended
  log-score, how deep into the network's ranking they reach and (where they carry the ranking)
  their SVM's C are "auto": chosen on a slice
  of the training set held out of the network's training (reranker.validation_rows: 2.5% of it,
  at least 512 and at most 2,048 samples; none where 512 would be over a twentieth of the set,
  which then takes reranker.WEIGHT, 0.2, over the top 50), since the share differs by data (0.1
  to 1 on the sets measured) and no rule of the shape predicted it; it leaves 0.2 only on
  evidence (reranker.EVIDENCE).
"""

from __future__ import annotations

import math
import re

from .clusters import FULL_ASSIGN_MACS, auto_clusters
from .config import AUTO
from .configfile import config_from_dict
from .constants import MAX_INT
from .data import Dataset
from .errors import ConfigError, DataError
from .memory import estimate_for_config
from .model import INPUT_NORM_BAND, input_scale_for
from .reranker import WEIGHT, validation_size

EXACT_LABELS = 4096
HIDDEN = 512
MAX_DROPOUT = 0.5
FULL_DROPOUT_EPOCHS = 5
BATCH = 128
LR = 0.002
FEW_PASSES_LR = 0.004
FEW_PASSES = 2
ONE_PASS_LR = 0.005
ONE_PASS_MIN_NORM = 3.0  # least mean row norm a single-pass run trains on (input_scale)
WARMUP_SHARE = 0.025  # of the planned steps, in a run of one pass
TARGET_STEPS = 5000
REBUILD_INTERVAL = 50  # steps to the first rebuild; then x REBUILD_DECAY per rebuild, up to rebuild_max_interval
REBUILD_DECAY = 1.3
# The rebuilds' share of a run's steps above which the first interval grows (first_rebuild_interval);
# the sets measured stay below it: DebianDeps 0.11-0.15, DebianNextWord's 2 passes 0.15-0.17, the
# 10^5-label generated set under 120 s 0.23 (the model's figures; measured 0.08-0.23).
RAMP_SHARE_LIMIT = 0.3
REBUILD_MAX_INTERVAL = 300
REBUILD_SHARE = 0.1
BLAS_ADVANTAGE = 4.0
REBUILD_INTERVAL_LIMIT = 2000  # configs/amazon670k.yaml's cap: an index older than that goes stale
ASSIGN_MACS_PER_STEP = 1 << 33
MAX_EPOCHS = 20
MAX_EXACT_EPOCHS = 5  # where the output layer is `all` (planned_passes), at EXACT_LR
EXACT_LR = 0.006
EVALS_PER_RUN = 10
EVAL_SUBSET = 2000
EVAL_SHARE = 0.1  # of the training seconds, at most, for the evaluations along the run
NEIGHBOURS_K = 25
NEIGHBOURS_TEMPERATURE = 0.05
VOTES_SCALE = 2.2
MIN_VOTES, MAX_VOTES = 0.3, 0.7
NEIGHBOUR_BANK_FLOATS = 1 << 25
# A larger bank stays whole while its product costs at most BANK_COST_RATIO times exact scoring's
# (samples <= BANK_COST_RATIO x labels) and it holds at most MAX_BANK_FLOATS floats (1 GB).
BANK_COST_RATIO = 2
MAX_BANK_FLOATS = 1 << 28
# A bank sampled down to that size keeps the votes while each label has this many positives in it
# on average (see the module doc).
MIN_BANK_POSITIVES = 2.5
CHECKPOINT_EVERY_S = 600.0
MEMORY_SHARE = 0.75  # of the memory available, at most, for the run's estimate (memory.py)
MIN_HIDDEN = 64


_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """Seconds from '90', '90s', '5m', '1.5h', '1h30m', '5m30s' (ConfigError otherwise)."""
    parts = re.findall(r"([0-9]*\.?[0-9]+)\s*([smh]?)", str(text))
    units = [unit for _, unit in parts]
    joined = re.sub(r"\s+", "", str(text))
    if (not parts or "".join(a + u for a, u in parts) != joined or len(set(units)) < len(units)
            or (len(parts) > 1 and "" in units)):
        raise ConfigError(f"--time-budget: {text!r} is not a duration like 90s, 5m, 1.5h or 5m30s")
    seconds = sum(float(amount) * _UNIT_SECONDS[unit] for amount, unit in parts)
    if seconds <= 0:
        raise ConfigError(f"--time-budget: {text!r} must be longer than 0 s")
    return seconds


def output_budget(n_labels: int) -> int:
    """Active output neurons per sample: 4 sqrt(N) as a multiple of 64, within [256, 4096]."""
    return int(min(4096, max(256, 64 * math.ceil(4 * math.sqrt(n_labels) / 64))))


def rebuild_spread(n_labels: int, budget: int) -> int:
    """Steps a cluster-index rebuild of the output layer is spread over (0: one step): its
    assignment's multiply-adds over ASSIGN_MACS_PER_STEP, at most REBUILD_INTERVAL; 0 above
    FULL_ASSIGN_MACS (a spread rebuild assigns every row in full)."""
    macs = n_labels * auto_clusters(n_labels, budget) * (HIDDEN + 1)
    steps = math.ceil(macs / ASSIGN_MACS_PER_STEP)
    return 0 if steps <= 1 or macs > FULL_ASSIGN_MACS else min(REBUILD_INTERVAL, steps)


def rebuild_cost_in_steps(n_labels: int, budget: int, nnz_per_sample: float) -> float:
    """How many training steps' time one rebuild of the output layer's index takes: its
    assignment's multiply-adds at BLAS_ADVANTAGE times a step's rate (module doc)."""
    rebuild = n_labels * auto_clusters(n_labels, budget) * (HIDDEN + 1) / BLAS_ADVANTAGE
    step = BATCH * HIDDEN * (nnz_per_sample + budget) * 3  # forward, backward, weight gradient
    return rebuild / step


def rebuild_max_interval(n_labels: int, budget: int, nnz_per_sample: float) -> int:
    """The cap on the steps between two rebuilds of the output layer's index: REBUILD_MAX_INTERVAL,
    or as many steps as keep a rebuild to REBUILD_SHARE of their time, at most
    REBUILD_INTERVAL_LIMIT."""
    interval = math.ceil(rebuild_cost_in_steps(n_labels, budget, nnz_per_sample) / REBUILD_SHARE)
    return int(min(REBUILD_INTERVAL_LIMIT, max(REBUILD_MAX_INTERVAL, interval)))


def rebuilds_in(steps: int, first: int, max_interval: int) -> int:
    """Rebuilds a run of `steps` makes: the first after `first` steps, each interval REBUILD_DECAY
    times the one before, at most `max_interval` (the trainer's schedule)."""
    count, at, interval = 0, 0.0, float(first)
    while at + interval <= steps:
        at, count = at + interval, count + 1
        interval = min(interval * REBUILD_DECAY, max_interval)
    return count


def first_rebuild_interval(planned_steps: int, cost_in_steps: float, max_interval: int) -> int:
    """REBUILD_INTERVAL, unless the rebuilds that ramp makes in a short run would take more than
    RAMP_SHARE_LIMIT of its steps' time (each costs `cost_in_steps`): then the least first
    interval whose rebuilds keep to REBUILD_SHARE, at most the cap `max_interval`, and at least
    one rebuild, halfway. Below the
    limit the early rebuilds stay: the index goes stale fastest while the weights move most.

    Why: the cap (rebuild_max_interval) keeps a long run's rebuilds to their share, but the early
    ones, at 50, 115, 200, ... steps, cost the same each; a run of 825 steps over 10^5 labels (a
    90 s budget) spent 51% of it rebuilding (46 of 90 s, 6 rebuilds), and trained 1,671 steps to
    P@1 0.376 against 0.287 with its first rebuild at 400 (a generated long-tail set, 1.2
    positives a label; bench/measured-2026-12-07/rebuild-ramp/)."""
    def share(first: int) -> float:
        return rebuilds_in(planned_steps, first, max_interval) * cost_in_steps / max(1, planned_steps)

    if share(REBUILD_INTERVAL) <= RAMP_SHARE_LIMIT:
        return REBUILD_INTERVAL
    first, most = REBUILD_INTERVAL, min(planned_steps // 2, max_interval)  # from the cap on, every interval is the cap
    while first < most and share(first) > REBUILD_SHARE:
        first = math.ceil(first * 1.25)
    return max(REBUILD_INTERVAL, min(first, most))


def planned_passes(steps_per_epoch: int, exact: bool) -> int:
    """Passes without a time budget: TARGET_STEPS steps rounded up to whole passes, within [1,
    MAX_EPOCHS], or within [1, MAX_EXACT_EPOCHS] where every output row is trained each step
    (`exact`: the `all` output layer; see the module doc)."""
    cap = MAX_EXACT_EPOCHS if exact else MAX_EPOCHS
    return int(min(cap, max(1, math.ceil(TARGET_STEPS / steps_per_epoch))))


def passes_in_budget(time_budget_s: float, samples_per_second: float, n_samples: int) -> float:
    """Passes over `n_samples` that `time_budget_s` of training allows at `samples_per_second`
    (a trial's rate), less REBUILD_SHARE of the time for rebuilds (see the module doc)."""
    return time_budget_s * samples_per_second * (1.0 - REBUILD_SHARE) / max(1, n_samples)


def dropout_for(epochs: float) -> float:
    """Dropout for a run of `epochs` passes: 0 at one pass, MAX_DROPOUT from FULL_DROPOUT_EPOCHS."""
    share = (epochs - 1.0) / (FULL_DROPOUT_EPOCHS - 1.0)
    return round(MAX_DROPOUT * min(1.0, max(0.0, share)), 3)


def learning_rate(passes: float, exact: bool = False) -> float:
    """Adam's peak learning rate for a run of `passes` passes over the data, `exact` where every
    output row is trained each step (the `all` output layer; see the module doc)."""
    if passes <= 1:
        return ONE_PASS_LR
    if passes <= FEW_PASSES:
        return FEW_PASSES_LR
    return EXACT_LR if exact and passes <= MAX_EXACT_EPOCHS else LR


def input_scale(train: Dataset, passes: float) -> float:
    """model.input_scale for a run of `passes` passes over `train` (see the module doc): the
    band of model.INPUT_NORM_BAND, its lower edge raised to ONE_PASS_MIN_NORM for one pass."""
    lo, hi = INPUT_NORM_BAND
    return input_scale_for(train, (max(lo, ONE_PASS_MIN_NORM), hi) if passes <= 1 else INPUT_NORM_BAND)


def warmup_steps(passes: float, planned_steps: int) -> int:
    """Steps over which the learning rate ramps up: WARMUP_SHARE of the planned steps in a run of
    one pass, else none (see the module doc)."""
    return int(round(WARMUP_SHARE * planned_steps)) if passes <= 1 else 0


def votes_weight(positives_per_label: float) -> float:
    """The votes' share of the blended score for a training set whose labels have this many
    positive samples on average: VOTES_SCALE / sqrt(m) within [MIN_VOTES, MAX_VOTES], to a tenth."""
    share = VOTES_SCALE / math.sqrt(max(positives_per_label, 1e-9))
    return round(min(MAX_VOTES, max(MIN_VOTES, share)), 1)


def neighbours_for(n_samples: int, n_label_slots: int, n_labels: int) -> dict:
    """model.neighbours for a training set of `n_samples` holding `n_label_slots` (sample, label)
    pairs over `n_labels` labels (see the module doc): every sample in the bank while it fits
    NEIGHBOUR_BANK_FLOATS, or while it costs at most BANK_COST_RATIO times exact scoring and fits
    MAX_BANK_FLOATS; past that a random part that fits NEIGHBOUR_BANK_FLOATS, at MIN_VOTES, while
    its labels keep MIN_BANK_POSITIVES positives each on average; else off."""
    positives = n_label_slots / max(1, n_labels)
    fits = NEIGHBOUR_BANK_FLOATS // HIDDEN
    votes = {"k": NEIGHBOURS_K, "temperature": NEIGHBOURS_TEMPERATURE, "space": "auto"}
    cheap = n_samples <= BANK_COST_RATIO * n_labels and n_samples <= MAX_BANK_FLOATS // HIDDEN
    if n_samples <= fits or cheap:
        return {**votes, "weight": votes_weight(positives)}
    if positives * fits / n_samples < MIN_BANK_POSITIVES:
        return {**votes, "weight": 0.0}
    return {**votes, "weight": MIN_VOTES, "bank_samples": fits}


OPTIMIZER_NAMES = {"adam": "Adam", "sgd": "SGD"}


def describe(config, train: Dataset, recipe: dict | None = None) -> str:
    """One line for the console: the training data's shape and what the resolved `config` (a
    configfile.Config, --set overrides applied) trains on it; `recipe`, auto_config's dict it came
    from, tells a width fit_width narrowed from one an override set."""
    b = max(1, train.n_samples)
    shape = (f"{train.n_samples:,} samples x {train.n_features:,} features, {train.n_labels:,} labels "
             f"({train.nnz / b:.1f} non-zeros and {train.y_indices.shape[0] / b:.2f} labels a sample)")
    model, training = config.model, config.training
    selection = model.output.selection
    output = ("every label scored (exact softmax)" if selection.mode == "all"
              else f"{selection.budget:,} of the {train.n_labels:,} labels a sample picked by {selection.mode}")
    length = (f"until {training.time_budget_s:g} s of training" if training.time_budget_s
              else f"{training.epochs} epochs")
    votes = model.neighbours.weight
    width = None if recipe is None else recipe["model"]["hidden"][0]
    narrowed = width is not None and width < HIDDEN and [h.size for h in model.hidden] == [width]
    narrow = " (narrowed to fit the memory available)" if narrowed else ""
    auto = model.neighbours.space == "auto"
    space = " (nearest in the hidden or the input space, whichever votes better)" if auto else ""
    return (f"automatic recipe for {shape}: {' + '.join(str(h.size) for h in model.hidden)} hidden units{narrow} "
            f"at dropout "
            f"{model.dropout:g}, {output}, {OPTIMIZER_NAMES.get(training.optimizer, training.optimizer)} lr "
            f"{training.lr:g} ({training.lr_schedule}), {length}, "
            + (f"neighbours' votes at {votes:g}{space}" if votes > 0 else "no neighbours' votes")
            + _leaves_text(model.reranker.weight, train))


def _leaves_text(weight, train: Dataset) -> str:
    if weight == AUTO:
        if validation_size(train.n_samples) == 0:
            return (f", re-ranked by per-label linear leaves at {WEIGHT:g} (too few samples to hold a slice out to "
                    f"choose it on)")
        return ", re-ranked by per-label linear leaves (their share, depth and C chosen on a held-out slice)"
    return f", re-ranked by per-label linear leaves at {weight:g}" if weight > 0 else ""


def auto_config(train: Dataset, train_path: str, test_path: str | None, *, time_budget_s: float | None = None,
                samples_per_second: float | None = None, run_dir: str = "runs/auto") -> dict:
    """A config dict for `train` (already loaded from `train_path`) under the rules above; with a
    time budget, `samples_per_second` (calibrate.trial_rate) says how many passes it allows."""
    n, b = train.n_labels, train.n_samples
    if n < 2:
        raise DataError(f"{train_path}: {n} label{'s' if n != 1 else ''}: a classifier needs at least 2 to tell apart")
    if n <= EXACT_LABELS:
        output = {"mode": "all"}
    else:
        budget = output_budget(n)
        output = {"mode": "lsh", "budget": budget, "inference": "exact",
                  "lsh": {"family": "kmeans", "clusters": "auto",
                          "rebuild": {"initial_interval": REBUILD_INTERVAL, "decay": REBUILD_DECAY,
                                      "max_interval": rebuild_max_interval(n, budget, train.nnz / max(1, b)),
                                      "refresh_every": 20, "spread_steps": rebuild_spread(n, budget)}}}
    steps_per_epoch = max(1, math.ceil(b / BATCH))
    passes = planned_passes(steps_per_epoch, exact=output["mode"] == "all")
    if time_budget_s is None:
        epochs, planned_steps = passes, passes * steps_per_epoch
    elif samples_per_second is None:  # no trial (a dry run): about the steps' plan, whatever the budget
        epochs, planned_steps = 1000, TARGET_STEPS  # the time budget ends the run
    else:
        passes = passes_in_budget(time_budget_s, samples_per_second, b)
        epochs, planned_steps = 1000, max(1, round(passes * steps_per_epoch))
    planned_steps = min(planned_steps, MAX_INT)  # a step count the config can hold, however long the budget
    if output["mode"] == "lsh":
        rebuild = output["lsh"]["rebuild"]
        rebuild["initial_interval"] = first_rebuild_interval(
            planned_steps, rebuild_cost_in_steps(n, budget, train.nnz / max(1, b)), rebuild["max_interval"])
    config = {
        "data": {"train": str(train_path), "test": None if test_path is None else str(test_path), "format": "auto"},
        "model": {"hidden": [HIDDEN], "dropout": dropout_for(passes), "input_scale": input_scale(train, passes),
                  "output": {"selection": output},
                  "loss": "softmax", "neighbours": neighbours_for(b, int(train.y_indices.shape[0]), n),
                  "reranker": {"weight": AUTO}},
        "training": {"epochs": epochs, "batch_size": min(BATCH, b), "lr": learning_rate(passes, exact=output["mode"] == "all"),
                     "lr_schedule": "linear",
                     "warmup_steps": warmup_steps(passes, planned_steps),
                     "optimizer": "adam", "time_budget_s": time_budget_s, "log_every": max(1, min(100, planned_steps // 50))},
        "eval": {"every": max(1, planned_steps // EVALS_PER_RUN), "subset": EVAL_SUBSET,
                 "k": [k for k in (1, 3, 5) if k <= n],  # P@3 of 2 labels could never pass 2/3
                 "recall_samples": 256 if output["mode"] == "lsh" else 0, "max_share": EVAL_SHARE},
        "output": {"run_dir": run_dir, "checkpoint_every": 0, "checkpoint_every_s": CHECKPOINT_EVERY_S, "keep_last": 2},
    }
    return fit_width(config, train)


def fit_width(config: dict, train: Dataset) -> dict:
    """`config` with its hidden layer halved (down to MIN_HIDDEN) until the run's memory estimate
    is within MEMORY_SHARE of the memory available now: layer 0 holds features x hidden weights
    with their gradient and Adam moments, 16 bytes each, so a few million features at HIDDEN
    units outgrow a small machine, where a narrower network still trains."""
    while True:
        estimate = estimate_for_config(config_from_dict(config), train=train)
        width = config["model"]["hidden"][0]
        if estimate.available is None or estimate.total <= MEMORY_SHARE * estimate.available or width <= MIN_HIDDEN:
            return config
        config["model"]["hidden"] = [max(MIN_HIDDEN, width // 2)]
