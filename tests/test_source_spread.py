"""compute.intervals.source_spread / summarise: intervals that cover retraining the source (compute.replicas).

The model simulated is the one the demo's runs follow: accuracy = source mean + the source draw's offset (one per
replica, sd SIGMA_SOURCE) + the seed's subset effect (shared by every source on that seed, so it cancels in a
paired difference) + fine-tuning noise (sd SIGMA_RUN). Natural and the analogue have 3 replicas, a ladder source
one, as in the demo preset; pooled over three subset sizes, as `source_spread` pools them.
"""

import math

import numpy as np
import pandas as pd
import pytest

from compute.intervals import RETRAINING, basis, replica_weights, source_spread, summarise

SIGMA_SOURCE = 0.01
# subset size -> (seeds, subset effect sd, fine-tuning noise sd): the demo ladder's seeds, and noise of the demo's
# order (per-seed accuracy sd about 4 points at n=20, 3 at 100, 1 at 400 in its caches; about half of it shared
# by every source on a seed)
SIZES = {20: (20, 0.03, 0.025), 100: (6, 0.02, 0.02), 400: (5, 0.007, 0.007)}
TRUE_DELTA = 0.01  # ladder source minus natural, every size
TRIALS = 400  # x 3 sizes = 1,200 intervals: binomial standard error of a coverage near 0.9 is 0.009
# Measured with this seed: widened 0.898, seeds-only 0.778; with the true spread known (no estimate) the same
# formula covers 0.95 / 0.94 / 0.98 at n = 20 / 100 / 400. The shortfall from 0.95 is the price of estimating the
# spread from 4 replica draws (2 per replicated source, counted once across sizes): the README says the intervals
# cover about 90%. Bounds: widened at least 0.87 (4 standard errors under the measured value); seeds-only at most
# 0.83, and the widening must gain at least 0.08.
WIDENED_AT_LEAST, SEEDS_ONLY_AT_MOST, GAIN = 0.87, 0.83, 0.08


def _runs(rng: np.random.Generator) -> pd.DataFrame:
    offsets = {(f, k): rng.normal(0, SIGMA_SOURCE) for f in ("natural", "analogue", "ladder") for k in range(3)}
    rows = []
    for n, (seeds, sigma_subset, sigma_run) in SIZES.items():
        for seed in range(seeds):
            subset = rng.normal(0, sigma_subset)
            for family, replicas, mean in (("natural", 3, 0.6), ("analogue", 3, 0.61), ("ladder", 1, 0.6 + TRUE_DELTA)):
                k = seed % replicas
                acc = mean + offsets[family, k] + subset + rng.normal(0, sigma_run)
                rows.append({"source": family, "model": f"{family}#s{k}", "target": "t", "n_train": n, "blocks": 3,
                             "seed": seed, "acc": acc})
    return pd.DataFrame(rows)


def _paired(per: pd.DataFrame, robust: str) -> pd.DataFrame:
    a, b = per[per["source"] == robust], per[per["source"] == "natural"]
    m = a.merge(b, on=["target", "n_train", "blocks", "seed"], suffixes=("_a", "_b"))
    return m.drop(columns=["source_a", "source_b"]).assign(acc=m["acc_a"] - m["acc_b"], source=robust)


def _coverage(widened: bool) -> float:
    rng = np.random.default_rng(20000000)
    hits = total = 0
    cell = ["target", "n_train", "blocks"]
    for _ in range(TRIALS):
        per = _runs(rng)
        spread = source_spread(per, cell) if widened else None
        rows = summarise(_paired(per, "ladder"), ["source", *cell], ("model_a", "model_b"), spread)
        hits += int(((rows["lo"] <= TRUE_DELTA) & (TRUE_DELTA <= rows["hi"])).sum())
        total += len(rows)
    return hits / total


@pytest.mark.slow
def test_widened_intervals_cover_a_single_trained_source_and_seeds_only_ones_do_not() -> None:
    widened, seeds_only = _coverage(True), _coverage(False)
    assert widened >= WIDENED_AT_LEAST, widened
    assert seeds_only <= SEEDS_ONLY_AT_MOST, seeds_only
    assert widened - seeds_only >= GAIN, (widened, seeds_only)


def test_spread_removes_the_subset_and_corrects_for_the_other_replicated_source() -> None:
    # No fine-tuning noise: accuracy = the seed's subset effect + the replica's offset. Natural and the analogue are
    # the cell's only sources, both replicated, so each is taken relative to the other: the replica means of the
    # difference vary by the two offsets' difference, and the estimator halves it (1 + m / k^2 = 2).
    subset = {seed: 0.1 * seed for seed in range(6)}  # large, and it must vanish from the estimate
    offsets = {"a": [0.00, 0.02, -0.01], "b": [0.01, -0.02, 0.00]}
    rows = [{"source": f, "model": f"{f}#s{seed % 3}", "target": "t", "n_train": 20, "blocks": 3, "seed": seed,
             "acc": 0.5 + subset[seed] + offsets[f][seed % 3]} for f in offsets for seed in subset]
    spread = source_spread(pd.DataFrame(rows), ["target", "n_train", "blocks"])
    difference = np.array(offsets["a"]) - np.array(offsets["b"])
    assert list(spread.columns) == ["target", "blocks", "source_var", "source_df"]
    assert spread["source_var"].iloc[0] == pytest.approx(difference.var(ddof=1) / 2, rel=1e-9)
    assert spread["source_df"].iloc[0] == 4


def test_spread_is_unbiased_for_two_replicated_sources_alone() -> None:
    rng = np.random.default_rng(7)
    estimates = []
    for _ in range(300):
        offsets = rng.normal(0, SIGMA_SOURCE, (2, 3))
        rows = [{"source": f, "model": f"{f}#s{seed % 3}", "target": "t", "n_train": 20, "blocks": 3,
                 "seed": seed, "acc": offsets[i, seed % 3] + rng.normal(0, 0.01)}
                for seed in range(12) for i, f in enumerate("ab")]
        spread = source_spread(pd.DataFrame(rows), ["target", "n_train", "blocks"])
        estimates.append(float(spread["source_var"].iloc[0]))
    # The floor at 0 biases the mean up a little; 300 draws of a 4-df estimate: standard error about 8% of it.
    assert np.mean(estimates) == pytest.approx(SIGMA_SOURCE ** 2, rel=0.3)


def test_no_replicas_no_spread_and_the_seeds_interval_is_unchanged() -> None:
    per = pd.DataFrame({"source": "x", "model": "x", "target": "t", "n_train": 20, "blocks": 3, "seed": range(4),
                        "acc": [0.5, 0.52, 0.55, 0.49]})
    assert source_spread(per, ["target", "n_train", "blocks"]).empty
    row = summarise(per, ["source", "target", "n_train", "blocks"]).iloc[0]
    half = 3.182446305284263 * per["acc"].std() / 2  # t(0.975, 3) sd / sqrt(4)
    assert (row["lo"], row["hi"]) == pytest.approx((per["acc"].mean() - half, per["acc"].mean() + half), rel=1e-12)
    assert math.isnan(row["source_sd"]) and basis(pd.DataFrame([row])) == "seeds"


def replica_weight(models: list[str]) -> float:
    per = pd.DataFrame({"cell": "c", "model": models})
    return float(replica_weights(per, ["cell"], "model")["weight_model"].iloc[0])


def test_replica_weight() -> None:
    assert replica_weight(["a"] * 5) == 1.0
    assert replica_weight(["a", "b", "c"] * 2) == pytest.approx(1 / 3)
    assert replica_weight(["a", "b", "c", "a", "b"]) == pytest.approx((4 + 4 + 1) / 25)


def test_widened_row_says_so() -> None:
    rng = np.random.default_rng(1)
    per = _runs(rng)
    cell = ["target", "n_train", "blocks"]
    rows = summarise(_paired(per, "ladder"), ["source", *cell], ("model_a", "model_b"), source_spread(per, cell))
    assert basis(rows) == RETRAINING and rows["source_sd"].notna().all()
    assert (rows["hi"] - rows["lo"] > 0).all()
