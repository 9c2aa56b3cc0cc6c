"""REPRODUCTIONS.md is written from the store: each claim is decided by its declared checks
(a per-seed quantity, its 95% paired t-interval over seeds, a threshold), three-way; the
sequential seed rule, the lr tuning and flagged baselines, on synthetic stores."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hidden_core import reproduce
from hidden_core.analysis.health import flagged_only, unhealthy_cells
from hidden_core.records import HEALTH_FLAGS
from hidden_core.spec import parse_spec
from hidden_core.store import ResultStore

NOISE = np.array([0.004, -0.003, 0.001, -0.006, 0.005, 0.002, -0.001, 0.003, -0.004, 0.0])


def nz(seed: int) -> float:
    """Seed noise; the tuning seed (100) reuses the table."""
    return float(NOISE[seed % len(NOISE)])


FLAGS: dict[str, str] = {}  # trial_id -> health_flags, added to every trials table read


@pytest.fixture(autouse=True)
def health_column(monkeypatch):
    """Each trial's health_flags as set by _rows' `flags` (FLAGS), on every trials table read."""
    load = ResultStore.load_trials

    def with_flags(self, sweep, *args, **kwargs):
        frame = load(self, sweep, *args, **kwargs)
        if "trial_id" in frame:
            frame[HEALTH_FLAGS] = frame["trial_id"].map(FLAGS).fillna("")
        return frame

    monkeypatch.setattr(ResultStore, "load_trials", with_flags)
    yield
    FLAGS.clear()


def _rows(spec, accuracy, extra=None, flags=None):
    rows = []
    for t in parse_spec(spec).plan().trials:
        row = {**t.config.model_dump(), "trial_id": t.trial_id, "cell_id": t.cell_id, "status": "completed",
               "test_acc_at_best_val": accuracy(t.config), "best_val_acc": accuracy(t.config), "train_seconds": 1.0, "density": 0.5,
               }
        FLAGS[t.trial_id] = (flags or (lambda c: ""))(t.config)
        row.update((extra or (lambda c: {}))(t.config))
        rows.append(row)
    return rows


def tune_rounds(store, raw, tune, flags=None):
    """The tuning sweep as run_claim runs it: each round writes the trials the widening rule
    asks for that the store lacks, until every cell has chosen. Returns the rounds run."""
    for rounds in range(1 + reproduce.LR_WIDEN_STEPS + 1):
        if reproduce.chosen_lrs(raw, store) is not None:
            return rounds
        tspec = reproduce.tuning_spec(raw, store)
        done = set(store.load_trials(tspec["name"])["trial_id"]) if tspec["name"] in store.sweeps() else set()
        store.write_trials(tspec["name"], [r for r in _rows(tspec, tune, flags=flags) if r["trial_id"] not in done])
        store.flush()
    raise AssertionError("the widening rule did not settle")


def write(store, claim_key, sweep, accuracy, n=5, extra=None, flags=None, tune=lambda c: 0.5):
    """Trials of `sweep` as reproduce would run them at n seeds: its tuning sweep first
    (validation accuracy `tune`), then the reported spec with the lr chosen from it."""
    claim = next(c for c in reproduce.CLAIMS if c.key == claim_key)
    raw = reproduce.raw_spec(sweep)
    if sweep in claim.tuned:
        tune_rounds(store, raw, tune)
    spec = reproduce.resolved(claim, sweep, store, n)
    store.write_trials(sweep, _rows(spec, accuracy, extra, flags))
    store.flush()
    return spec


def section(text, key):
    return text.split(f"## ({key})")[1].split("\n## ")[0]


# ---- the three-way decision -------------------------------------------------------------------
CHECK = reproduce.Check("x - y", "s", {"x": {"method": "a"}, "y": {"method": "b"}}, "x - y", 0.0)


def _frame(diff):
    return pd.DataFrame([{"method": m, "seed": s, "test_acc_at_best_val": 0.5 + (diff + nz(s) if m == "a" else 0)} for s in range(5) for m in ("a", "b")])


@pytest.mark.parametrize(("diff", "verdict"), [(0.05, "reproduced"), (-0.05, "not reproduced"), (0.001, "inconclusive")])
def test_each_verdict_arises_from_where_the_interval_lies(diff, verdict):
    outcome = reproduce.decide(CHECK, {"s": _frame(diff)})
    lo, hi = outcome.interval
    assert outcome.verdict == verdict
    assert (lo > 0) == (verdict == "reproduced") and (hi < 0) == (verdict == "not reproduced")
    assert outcome.straddles == (verdict == "inconclusive")
    assert f"[{100 * lo:+.1f}, {100 * hi:+.1f}]" in outcome.text()  # the line quotes its interval


def test_combine_is_three_valued():
    R, N, U = reproduce.REPRODUCED, reproduce.NOT_REPRODUCED, reproduce.INCONCLUSIVE
    assert reproduce.combine([R, R], "all") == R and reproduce.combine([R, U], "all") == U and reproduce.combine([U, N], "all") == N
    assert reproduce.combine([N, R], "any") == R and reproduce.combine([N, U], "any") == U and reproduce.combine([N, N], "any") == N


def test_a_formula_is_arithmetic_only():
    bad = reproduce.Check("x", "s", {"x": {"method": "a"}}, "__import__('os')", 0.0)
    with pytest.raises(ValueError, match="names, numbers"):
        reproduce.per_seed(bad, _frame(0.0))


# ---- the sequential seed rule -----------------------------------------------------------------
def test_sequential_rule_adds_seeds_only_while_straddling_and_stops_at_10(tmp_path, monkeypatch):
    """Claim (b) decided on k = 0.5 minus each end. Runs are simulated: each sweep run writes
    the planned trials; the store's values decide when the rule stops."""
    ran = []

    def fake_run(spec, results, timings, timings_path, key):
        store = ResultStore(results)
        ran.append((spec["name"], len(spec["grid"]["seed"])))
        store.write_trials(spec["name"], _rows(spec, accuracy, flags=None))
        store.flush()

    monkeypatch.setattr(reproduce, "run_spec", fake_run)
    claim = next(c for c in reproduce.CLAIMS if c.key == "b")
    results = str(tmp_path / "clear")
    accuracy = lambda c: 0.5 - abs(c.keep_fraction - 0.5) * 0.5 + nz(c.seed) if c.lr else 0  # noqa: E731
    reproduce.run_claim(claim, results, {}, tmp_path / "t.json")
    assert [n for name, n in ran if name == "repro_edge_popup_k"] == [5]  # decided at 5: no more seeds
    ran.clear()
    # k = 0.5 and k = 0.9 equal up to noise: the interval straddles 0 at every step
    accuracy = lambda c: (0.2 if c.keep_fraction < 0.1 else 0.5) + 0.02 * np.sign(nz(c.seed)) * (c.keep_fraction > 0.8)  # noqa: E731
    reproduce.run_claim(claim, str(tmp_path / "straddle"), {}, tmp_path / "t2.json")
    assert [n for name, n in ran if name == "repro_edge_popup_k"] == [5, 7, 10]  # stops at the last step
    data, decision, steps = reproduce.reported_data(claim, ResultStore(tmp_path / "straddle"))
    assert data.n == 10 and decision.verdict == "inconclusive" and "still straddling at 10 seeds" in steps[-1]
    assert set(data.frames["repro_edge_popup_k"]["seed"]) == set(range(10))


def test_the_report_reads_only_the_seeds_the_rule_reached(tmp_path, monkeypatch):
    """Seeds 5..9 already in the store (another run) are not read while 5 seeds decide."""
    monkeypatch.setattr(reproduce, "FIGURE_DIR", tmp_path / "figures")
    store = ResultStore(tmp_path / "store")
    write(store, "b", "repro_edge_popup_k", lambda c: 0.5 - abs(c.keep_fraction - 0.5) * 0.5 + nz(c.seed) + (0.3 if c.seed >= 5 and c.keep_fraction > 0.8 else 0), n=10)
    text = reproduce.write_report(str(tmp_path / "store"), None)
    b = section(text, "b")
    assert "**Verdict: reproduced**" in b and "5 seeds: reproduced" in b and "over 5 seeds" in b


def test_sequential_rule_error_rate():
    """What the rule costs: at a true difference exactly on the threshold, each look's 95%
    interval errs one way 2.5% of the time; over three looks (5, 7, 10 seeds, stopping once
    decided) the measured rate of a decisive verdict is about 10% (5% per side), the figure
    REPRODUCTIONS.md's header and docs/methods.md state."""
    from hidden_core.analysis.intervals import paired_interval

    rng = np.random.default_rng(0)
    reps = 20000
    values = rng.normal(0, 1, (reps, 10))
    undecided = np.ones(reps, bool)
    for n in reproduce.SEED_STEPS:  # the rule's looks, vectorized over the replicates
        lo_hi = np.array([paired_interval(v[:n]) for v in values[:50]])  # the module's interval ...
        half = stats.t.ppf(0.975, n - 1) * values[:, :n].std(axis=1, ddof=1) / math.sqrt(n)
        mean = values[:, :n].mean(axis=1)
        assert np.allclose(lo_hi, np.c_[mean - half, mean + half][:50])  # ... is this one
        undecided &= (mean - half <= 0) & (mean + half >= 0)
    rate = 1 - undecided.mean()
    assert 0.09 < rate < 0.13, rate


# ---- lr tuning ----------------------------------------------------------------------------------
def test_tuning_picks_the_best_validation_lr_per_cell_and_the_reported_spec_runs_it(tmp_path):
    store = ResultStore(tmp_path / "store")
    raw = reproduce.raw_spec("repro_learn_fraction")
    # validation is best at 3x the spec's lr for learn_fraction, at 1/3 for dense: both at an
    # edge of the first grid, so each widens once (to 9x and 1/9), finds it worse, and stops
    best = {"learn_fraction": 3.0, "dense": 1 / 3}

    def tune(c):
        return 0.8 - abs(math.log(c.lr / (0.003 * best[c.method])))

    tspec = reproduce.tuning_spec(raw)
    assert tspec["grid"]["seed"] == [reproduce.TUNE_SEED] and parse_spec(tspec).plan().total == 3 * 5
    assert tune_rounds(store, raw, tune) == 2
    chosen = reproduce.chosen_lrs(raw, store)
    assert [c["lr"] for c in chosen] == [0.009, 0.009, 0.009, 0.009, 0.001]
    assert [sorted(c["tried"]) for c in chosen] == [[0.001, 0.003, 0.009, 0.027]] * 4 + [[0.000333, 0.001, 0.003, 0.009]]
    assert not any(c["edge"] for c in chosen)
    claim = next(c for c in reproduce.CLAIMS if c.key == "e")
    spec = reproduce.resolved(claim, "repro_learn_fraction", store, 5)
    trials = parse_spec(spec).plan().trials
    assert {(t.config.method, t.config.lr) for t in trials} == {("learn_fraction", 0.009), ("dense", 0.001)}
    assert {t.config.seed for t in trials} == set(range(5))


def test_widening_stops_after_its_fixed_number_of_steps_and_the_report_says_edge(tmp_path):
    store = ResultStore(tmp_path / "store")
    raw = reproduce.raw_spec("repro_learn_fraction")
    # validation grows with lr without end: every cell widens twice upward, then stops
    assert tune_rounds(store, raw, lambda c: 0.5 + c.lr) == 1 + reproduce.LR_WIDEN_STEPS
    chosen = reproduce.chosen_lrs(raw, store)
    assert [c["lr"] for c in chosen] == [0.081] * 5
    assert all(sorted(c["tried"]) == [0.001, 0.003, 0.009, 0.027, 0.081] and c["edge"] for c in chosen)
    table = "\n".join(reproduce._lr_table(next(c for c in reproduce.CLAIMS if c.key == "e"), store))
    assert "0.081 (grid edge after widening)" in table and "5 of 5 cells still chose an lr at the edge" in table


def test_tuning_never_chooses_a_flagged_lr_while_the_cell_has_a_healthy_one(tmp_path):
    store = ResultStore(tmp_path / "store")
    raw = reproduce.raw_spec("repro_learn_fraction")
    # validation grows with lr everywhere; 3x the spec's lr and above spike the loss in every
    # cell, and dense kills its units at every lr it tries
    def flags(c):
        return "dead_units" if c.method == "dense" else ("loss_spike" if c.lr > 0.005 else "")

    tune_rounds(store, raw, lambda c: 0.5 + c.lr, flags=flags)
    chosen = reproduce.chosen_lrs(raw, store)
    assert [c["lr"] for c in chosen] == [0.003, 0.003, 0.003, 0.003, 0.081]
    assert [c["all_flagged"] for c in chosen] == [False] * 4 + [True]
    assert chosen[0]["flagged"] == {0.009: "loss_spike"} and sorted(chosen[0]["tried"]) == [0.001, 0.003, 0.009]
    table = "\n".join(reproduce._lr_table(next(c for c in reproduce.CLAIMS if c.key == "e"), store))
    assert "0.009: 50.9 (flagged: loss_spike)" in table and "0.081 (grid edge after widening) (every lr flagged)" in table


def test_dead_units_is_structural_in_a_methods_own_cells_but_rules_out_a_dense_lr(tmp_path):
    store = ResultStore(tmp_path / "store")
    raw = reproduce.raw_spec("repro_learn_fraction")
    # 3x the spec's lr is best everywhere and kills half a layer everywhere
    tune_rounds(store, raw, lambda c: 0.8 - abs(math.log(c.lr / 0.009)), flags=lambda c: "dead_units" if c.lr > 0.005 else "")
    chosen = reproduce.chosen_lrs(raw, store)
    assert [c["lr"] for c in chosen] == [0.009, 0.009, 0.009, 0.009, 0.003]


def test_a_missing_tuning_trial_means_nothing_is_chosen_yet(tmp_path):
    store = ResultStore(tmp_path / "store")
    raw = reproduce.raw_spec("repro_learn_fraction")
    tspec = reproduce.tuning_spec(raw)
    store.write_trials(tspec["name"], _rows(tspec, lambda c: 0.5)[1:])
    store.flush()
    assert reproduce.chosen_lrs(raw, store) is None


# ---- the report ------------------------------------------------------------------------------------
def test_report_sections_quote_the_interval_and_the_chosen_lr(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce, "FIGURE_DIR", tmp_path / "figures")
    store = ResultStore(tmp_path / "store")
    write(store, "f", "repro_supermask", lambda c: (0.9 if c.method == "dense" else 0.6) + nz(c.seed), tune=lambda c: 0.5 + 0.001 * c.lr)
    text = reproduce.write_report(str(tmp_path / "store"), None)
    f = section(text, "f")
    assert "**Verdict: reproduced**" in f and "`(x - chance) / (d - chance)`" in f
    assert "Zhou et al. 2019 (abstract)" in f and "far better than chance" in f
    assert "| method supermask, supermask_eval sampled |" in f and "| 2.7e+03 (grid edge after widening) |" in f  # lr 100 x 3 x 3 x 3 chosen
    assert "3 of 3 cells still chose an lr at the edge of the widened grid" in f
    assert "s0: 60.4, s1: 59.7" in f and "no biases" in f
    assert (tmp_path / "figures" / "claim_f.png").stat().st_size > 0
    assert len(pd.read_csv(tmp_path / "figures" / "claim_f_trials.csv")) == 15
    assert "Not run yet (the lr tuning of repro_edge_popup_width" in section(text, "a")


@pytest.mark.parametrize("winner", ["free_prune", "sign_flip"])
def test_claim_d_passes_with_either_method(tmp_path, monkeypatch, winner):
    monkeypatch.setattr(reproduce, "FIGURE_DIR", tmp_path / "figures")
    store = ResultStore(tmp_path / "store")
    write(store, "d", "repro_connectivity", lambda c: (0.6 if c.method in ("dense", winner) else 0.3) + nz(c.seed),
          extra=lambda c: {"changed_fraction": 0.05 + nz(c.seed) if c.method == winner else 0.4})
    d = section(reproduce.write_report(str(tmp_path / "store"), None), "d")
    assert "**Verdict: reproduced**" in d and f"**{winner} (penalty -1): reproduced**" in d
    other = "sign_flip" if winner == "free_prune" else "free_prune"
    assert f"**{other} (penalty -1): not reproduced**" in d


def _width_accuracy(c):
    dense = {0.5: 0.50, 1: 0.55, 2: 0.58, 4: 0.60}[c.width]
    edge = {0.5: 0.40, 1: 0.48, 2: 0.55, 4: 0.58}[c.width]
    return (dense if c.method == "dense" else edge) + nz(c.seed)


def test_a_flagged_baseline_changes_the_decision_basis_and_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce, "FIGURE_DIR", tmp_path / "figures")
    store = ResultStore(tmp_path / "clean")
    write(store, "a", "repro_edge_popup_width", _width_accuracy)
    mlp = section(reproduce.write_report(str(tmp_path / "clean"), None), "a")
    assert "**MLP: reproduced**" in mlp and "gap shrinks from width 0.5 to 4: reproduced" in mlp
    # the dense baseline at width 4 dies on one seed: flagged, the check falls back to width 2
    store = ResultStore(tmp_path / "flagged")
    write(store, "a", "repro_edge_popup_width", _width_accuracy, flags=lambda c: "dead_units" if c.method == "dense" and c.width == 4 and c.seed == 1 else "")
    flagged = section(reproduce.write_report(str(tmp_path / "flagged"), None), "a")
    assert "Decided on MLP: the gap shrinks from width 0.5 to 2 instead of MLP: the gap shrinks from width 0.5 to 4" in flagged
    assert "flagged baseline method dense, width 4 (dead_units in 1 of 5 seeds)" in flagged
    assert "**Training health** (analysis.health): repro_edge_popup_width method dense, width 4: dead_units in 1 of 5 seeds flagged." in flagged
    assert "**Training health** (analysis.health): no flagged trial." in mlp
    assert "edge-popup / dense at width 2" in flagged


def test_a_flagged_baseline_with_no_healthy_fallback_is_inconclusive(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce, "FIGURE_DIR", tmp_path / "figures")
    store = ResultStore(tmp_path / "store")
    write(store, "e", "repro_learn_fraction", lambda c: (0.6 if c.method == "dense" else 0.58) + nz(c.seed), flags=lambda c: "loss_stuck" if c.method == "dense" else "")
    e = section(reproduce.write_report(str(tmp_path / "store"), None), "e")
    assert "**Verdict: inconclusive**" in e and "inconclusive (baseline failed: method dense (loss_stuck in 5 of 5 seeds))" in e


def test_unhealthy_cells_contract():
    trials = pd.DataFrame({"method": ["a", "a", "b", "b", "c"], "seed": [0, 1, 0, 1, 0], HEALTH_FLAGS: ["", "dead_units,loss_stuck", "", None, "train_at_chance"]})
    bad = unhealthy_cells(trials, ["method"])
    assert list(bad.columns) == ["method", "n_trials", "n_flagged", "reasons"]
    assert bad.to_dict("records") == [
        {"method": "a", "n_trials": 2, "n_flagged": 1, "reasons": "dead_units in 1 of 2 seeds; loss_stuck in 1 of 2 seeds"},
        {"method": "b", "n_trials": 2, "n_flagged": 0, "reasons": "health unknown for 1 of 2 seeds (no health record: written before hidden recorded training health)"},
        {"method": "c", "n_trials": 1, "n_flagged": 1, "reasons": "train_at_chance in 1 of 1 seeds"}]
    assert list(flagged_only(bad)["method"]) == ["a", "c"]
    assert flagged_only(unhealthy_cells(trials.drop(columns=[HEALTH_FLAGS]), ["method"])).empty  # old store: unknown, nothing flagged


def test_run_sweeps_starts_nothing_when_every_planned_trial_is_final(tmp_path, monkeypatch):
    store = ResultStore(tmp_path / "store")
    for claim in reproduce.CLAIMS:
        if claim.key == "g":
            continue
        for sweep in claim.sweeps:
            # decided at 5 seeds (no interval straddles), so the rule asks for no more
            write(store, claim.key, sweep, lambda c: (0.9 if c.method == "dense" else 0.3 + 0.2 * (c.method == "edge_popup" and c.keep_fraction == 0.5)) + nz(c.seed))

    def no_run(*args, **kwargs):
        raise AssertionError("a finished sweep was started")

    monkeypatch.setattr(reproduce.subprocess, "run", no_run)
    reproduce.run_sweeps(str(tmp_path / "store"), tmp_path / "timings.json", only=["b", "e", "f"])
    assert not (tmp_path / "timings.json").exists()  # nothing ran, nothing timed


def test_claim_c_decides_growth_and_says_the_disabled_fraction_is_untested_with_its_trend(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce, "FIGURE_DIR", tmp_path / "figures")
    store = ResultStore(tmp_path / "store")

    def acc(c):
        return 0.5 + 0.01 * c.depth + 0.05 * c.width + nz(c.seed)

    def disabled(c):
        return {"disabled_features": 0.01 * c.epochs / 15}

    for sweep in ("repro_bn_only", "repro_bn_only_dense", "repro_bn_only_budget"):
        write(store, "c", sweep, acc, extra=disabled)
    c = section(reproduce.write_report(str(tmp_path / "store"), None), "c")
    assert "**Verdict: reproduced**" in c and "BN-only ResNet-20 minus ResNet-8 (width 1): reproduced" in c
    assert "disabled features, BN-only ResNet-20 (not decisive: untested at this budget" in c
    assert "15: 1.0% (n = 2), 30: 2.0% (n = 2), 60: 4.0% (n = 2), 100: 6.7% (n = 5)" in c
    assert set(pd.read_csv(tmp_path / "figures" / "claim_c_trials.csv")["sweep"]) == {"repro_bn_only", "repro_bn_only_dense", "repro_bn_only_budget"}


@pytest.mark.parametrize("formula", ["e / d", "(e - 0.1) / (d - 0.1)", "(d - e)"])
def test_the_per_seed_t_interval_covers_the_checks_quantities(formula):
    """Coverage of the 95% t-interval over 5 seeds for the quantities the checks use (ratios
    and chance-corrected ratios of two accuracies paired by seed, a difference), on Gaussian
    seed noise at the spread measured on MNIST-1D (about 2 points between seeds, partly shared
    by the paired cells): within two points of 95%. The truth is the quantity's mean over seeds,
    from a million draws."""
    rng = np.random.default_rng(1)

    def draw(shape):
        shared = rng.normal(0, 0.015, shape)  # the seed's data order and init, shared by both cells
        return 0.55 + shared + rng.normal(0, 0.015, shape), 0.60 + shared + rng.normal(0, 0.015, shape)

    e, d = draw(1_000_000)
    truth = eval(formula).mean()
    e, d = draw((4000, 5))
    q = eval(formula)
    half = stats.t.ppf(0.975, 4) * q.std(axis=1, ddof=1) / math.sqrt(5)
    coverage = np.mean(np.abs(q.mean(axis=1) - truth) <= half)
    assert 0.93 <= coverage <= 0.97, coverage


def test_a_flagged_method_cell_is_listed_but_does_not_gate_the_check(tmp_path, monkeypatch):
    """edge-popup at k = 0.05 near chance is claim (b)'s result, not a failed baseline."""
    monkeypatch.setattr(reproduce, "FIGURE_DIR", tmp_path / "figures")
    store = ResultStore(tmp_path / "store")
    write(store, "b", "repro_edge_popup_k", lambda c: 0.5 - abs(c.keep_fraction - 0.5) * 0.5 + nz(c.seed), flags=lambda c: "train_at_chance" if c.keep_fraction < 0.1 else "")
    b = section(reproduce.write_report(str(tmp_path / "store"), None), "b")
    assert "**Verdict: reproduced**" in b and "baseline failed" not in b
    assert "repro_edge_popup_k keep_fraction 0.05: train_at_chance in 5 of 5 seeds flagged." in b


def test_a_dense_baseline_that_falls_as_it_widens_gates_the_check_and_is_named(tmp_path, monkeypatch):
    """A dense baseline losing accuracy from width 2 to 4 on every seed failed its recipe at
    width 4 (no health flag needed): claim (a) is decided on the widest pair without it, and
    the section names the fall with its paired interval."""
    monkeypatch.setattr(reproduce, "FIGURE_DIR", tmp_path / "figures")
    store = ResultStore(tmp_path / "store")

    def accuracy(c):
        dense = {0.5: 0.50, 1: 0.55, 2: 0.60, 4: 0.56}[c.width]  # falls 4 points from width 2 to 4
        edge = {0.5: 0.40, 1: 0.48, 2: 0.57, 4: 0.56}[c.width]
        return (dense if c.method == "dense" else edge) + nz(c.seed)

    write(store, "a", "repro_edge_popup_width", accuracy)
    a = section(reproduce.write_report(str(tmp_path / "store"), None), "a")
    assert "Decided on MLP: the gap shrinks from width 0.5 to 2 instead of MLP: the gap shrinks from width 0.5 to 4" in a
    assert "flagged baseline method dense, width 4 (accuracy falls from width 2 to 4: -4.0 points, 95% paired t-interval over 5 seeds" in a
    assert "Decided on MLP: edge-popup / dense at width 2 instead of MLP: edge-popup / dense at width 4" in a
    assert "repro_edge_popup_width method dense: accuracy falls from width 2 to 4: -4.0 points" in a  # the health line


def test_falls_with_width_needs_the_paired_interval_below_zero():
    rows = [{"method": "dense", "width": w, "seed": s, "test_acc_at_best_val": 0.6 + 0.01 * w * (1 if s % 2 else -1)} for w in (1, 2) for s in range(6)]
    assert reproduce.falls_with_width(pd.DataFrame(rows), {"method": "dense"}).empty  # seeds disagree: no fall
    rows = [{"method": "dense", "width": w, "seed": s, "test_acc_at_best_val": 0.6 - 0.02 * w + nz(s)} for w in (1, 2) for s in range(5)]
    falls = reproduce.falls_with_width(pd.DataFrame(rows), {"method": "dense"})
    assert list(falls["x_to"]) == [2.0] and falls["ci_high"].iloc[0] < 0
