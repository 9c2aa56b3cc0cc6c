"""Spec -> trials -> skip the final ones -> Ray Tune -> one store row per trial as it ends.

    report = run_sweep("sweeps/quickstart.yaml", "results")             # embedded local Ray
    report = run_sweep(spec, "s3://bucket/results", address="auto")     # an existing cluster
    report = run_sweep(spec, "results", options=SweepOptions(num_cpus=2, progress=False))

Flow of one run:
1. Validate the spec and expand it (every problem at once, nothing started).
2. Take the sweep's lease (lease.py): a second live driver on the same sweep and store
   stops here, exit 2, naming the first.
3. Read the store (planning.py): trials already final (completed | pruned | diverged) are
   skipped; with `search`, each grid point only asks for the samples it still lacks.
4. Start an embedded Ray or join the cluster (ray_setup.py) and check that some node can
   hold one trial; the data goes into the object store meanwhile. An embedded Ray starts
   early, in the background (ray_setup.BackgroundStart), as soon as the spec is valid and
   there is something to run: right after the local checks here, or, from the CLI, before
   the largest trial's size is measured (`ray_started_early`). A refusal after that (the
   lease of another driver, a trial too big for this machine) stops that Ray before the
   command exits: nothing is written and no Ray process is left.
5. One Tune run over what is left; the seeds of a grid cell run as one vectorized Tune trial
   where the spec's `vectorize` says so (cells.py), each seed still its own trial. Each trial checkpoints into its own folder keyed by its
   trial_id (checkpoints.py) and resumes from it whoever starts it: Tune's retry after a
   lost worker, or this run after an earlier driver was killed. So a re-run after a killed
   driver is an ordinary run; Tune's experiment state is never restored.

As each trial ends (completed, pruned, failed, diverged) the driver writes its trial row and
its epoch rows to the store (tune_callbacks.py -> driver_state.py), and a final trial's
checkpoint goes. A killed driver loses at most the epochs since the last checkpoints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from hidden_core import paths
from hidden_core.spec import SweepSpec, check_resources, load_spec
from hidden_core.store import ResultStore, default_results_root
from hidden_core.tune import checkpoints, controls_pass, ray_setup
from hidden_core.tune.lease import SweepLease, release_dead_lease
from hidden_core.tune.planning import Todo, longest_first, plan_todo
from hidden_core.tune.report import SweepInterrupted, SweepReport, SweepStopped

log = logging.getLogger(__name__)

TUNE_EXPERIMENT = "experiment"


@dataclasses.dataclass(frozen=True)
class SweepOptions:
    """How one run_sweep call runs a spec (the spec says what runs): where, how fast, what it
    prints. Frozen; run_sweep's keyword arguments are these fields.

    - `address`: a Ray cluster ('auto', 'ray://host:10001', 'host:6379'); None starts an
      embedded local Ray (`num_cpus` limits it) that ignores RAY_ADDRESS and Ray's address file.
    - `study_storage`: Optuna storage URL for the per-cell studies (default: the spec's
      `study_storage`, else SQLite next to the store).
    - `progress`: print the progress line (True), not (False), or a Progress object to use.
    - `skip_resource_check`: do not refuse a spec whose trial no node can hold.
    - `max_concurrent`: overrides the spec's max_concurrent.
    - `train_fn`: replaces the core train (same signature) - for tests and benchmarks.
    - `report_every_s`: overrides the spec's report_every_s (seconds between a trial's
      reports; 0 = every epoch). Checkpoints are written every epoch regardless.
    - `keep_ray`: leave a Ray this call started running afterwards (benchmarks running
      several sweeps in one process).
    - `callbacks`: more Tune callbacks (e.g. experiment trackers), after the sweep's own.
    - `out`: where the progress and the controls pass print (default: sys.stdout at the call).
    """

    address: str | None = None
    study_storage: str | None = None
    progress: bool | Any = True
    skip_resource_check: bool = False
    max_concurrent: int | None = None
    num_cpus: int | None = None
    train_fn: Callable[..., Any] | None = None
    report_every_s: float | None = None
    keep_ray: bool = False
    callbacks: Sequence[Any] = ()
    out: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "callbacks", tuple(self.callbacks))  # frozen: a caller's list cannot change it later


SWEEP_OPTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SweepOptions))


def run_sweep(
    spec: SweepSpec | str | os.PathLike[str],
    results_root: str | os.PathLike[str] | None = None,
    *,
    options: SweepOptions | None = None,
    **overrides: Any,
) -> SweepReport:
    """Run every trial of `spec` that the store does not hold as final yet; return what
    happened.

    How it runs is `options` (SweepOptions), with any of its fields given as keyword
    arguments on top (`run_sweep(spec, root, num_cpus=2, progress=False)`).

    Raises `lease.SweepLeaseHeld` (a ConfigError: exit 2) when another live driver runs it.
    """
    unknown = sorted(set(overrides) - set(SWEEP_OPTIONS))
    if unknown:
        raise TypeError(f"run_sweep: unknown option {', '.join(unknown)}; SweepOptions has {', '.join(SWEEP_OPTIONS)}")
    options = dataclasses.replace(options or SweepOptions(), **overrides)
    if options.out is None:
        options = dataclasses.replace(options, out=sys.stdout)
    started = time.perf_counter()
    with _signals_end_sweep():
        report = SweepReport(sweep=getattr(spec, "name", "?"))
        try:
            return _run_sweep(spec, results_root, report, options, started)
        except SweepStopped as stop:
            stop.report = report
            raise


class _Signals:
    """The driver's SIGINT / SIGTERM state (`_signals_end_sweep`)."""

    received: int | None = None  # the first signal
    in_fit = False  # Tune is running: the signal stops it through _SignalStopper, not an exception
    install: Callable[[], Any] = staticmethod(lambda: None)
    depth = 0  # nested _signals_end_sweep blocks (ray_started_early around run_sweep): the outer one rules


@contextlib.contextmanager
def _signals_end_sweep() -> Iterator[None]:
    """SIGINT and SIGTERM end the sweep through its own cleanup (lease released, Ray
    stopped, temp dirs removed); the CLI then prints one line and exits 130 / 143. Outside
    Tune the handler raises SweepInterrupted at once. Inside Tune's loop an exception would
    be held back by Ray until the trials end, so the handler only records the signal and
    `_SignalStopper` stops every trial at Tune's next step; run_sweep raises after the fit.
    Tune's own SIGINT handler is off (it would print a Tuner.restore hint: a re-run is the
    resume). A second signal gets the default action. Only in the main thread."""
    if threading.current_thread() is not threading.main_thread() or _Signals.depth:
        yield
        return
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")

    def handler(signum: int, _frame: Any) -> None:
        for s in saved:
            signal.signal(s, signal.SIG_DFL)
        _Signals.received = signum
        if not _Signals.in_fit:
            raise SweepInterrupted(signum)

    def install() -> None:
        if _Signals.received is None:
            for s in saved:
                signal.signal(s, handler)

    _Signals.received, _Signals.in_fit, _Signals.install = None, False, install
    install()
    _Signals.depth += 1
    try:
        yield
    finally:
        _Signals.depth -= 1
        _Signals.install = staticmethod(lambda: None)
        for s, previous in saved.items():
            signal.signal(s, previous if previous is not None else signal.SIG_DFL)


# The embedded Ray `ray_started_early` started for the run_sweep inside its block, with the
# num_cpus it was started for: run_sweep takes it (and then stops it itself).
_EARLY: list[tuple[ray_setup.BackgroundStart, int | None]] = []


@contextlib.contextmanager
def ray_started_early(spec: SweepSpec, store: ResultStore, *, address: str | None = None, num_cpus: int | None = None,
                      check: Callable[[], Any] | None = None) -> Iterator[None]:
    """Start the embedded Ray of the run_sweep call this block makes now, in the background,
    so that Ray's processes come up while `check` runs: the caller's checks that import
    torch (the CLI measures the largest trial). Only for an embedded Ray (`address` None)
    with trials to run, and only when torch is not imported yet (else `check` takes
    milliseconds and runs first: nothing to overlap, no Ray for a refusal). Leaving the block
    stops that Ray unless run_sweep took it over; a refused check (any exception) therefore
    leaves no Ray. SIGINT / SIGTERM in the block raise SweepInterrupted (as in run_sweep,
    which the block may contain): at once, or, during `check`, once it returned (_signal_held)."""
    with _signals_end_sweep():
        early = None
        if check is not None and _torch_imported():
            check()
            check = None
        if address is None and not _EARLY and not ray_setup.ray_initialized() and _count_to_run(spec, store):
            early = _start_early(num_cpus)
            _EARLY.append((early, num_cpus))
        try:
            if check is not None:
                with _signal_held() if early is not None else contextlib.nullcontext():
                    check()
            yield
        finally:
            if early is not None:
                _EARLY.clear()
                with _signal_held():  # stop waits for Ray's start: a signal then must not cut it short
                    early.stop()  # a no-op once run_sweep took it


@contextlib.contextmanager
def _signal_held() -> Iterator[None]:
    """SIGINT / SIGTERM in the block raise SweepInterrupted when it ends, not inside it: the
    block imports (the CLI's check imports torch) while Ray's start imports in its thread, and
    an exception raised by the handler inside an import can leave importlib's global lock
    held, so that the start's thread never ends and BackgroundStart.stop waits for ever; or
    the block is BackgroundStart.stop, which a signal must not cut short (the Ray it waits
    for would go on starting with nothing left to stop it). Raised in a `finally`, the
    exception under way (a refusal) is its __context__."""
    in_fit, _Signals.in_fit = _Signals.in_fit, True  # the handler records the signal, raises nothing
    before = _Signals.received  # a signal received earlier was raised then (or will be, by Tune's loop)
    try:
        yield
    finally:
        _Signals.in_fit = in_fit
    if before is None and _Signals.received is not None:
        raise SweepInterrupted(_Signals.received)


def _torch_imported() -> bool:
    return "torch" in sys.modules


def _count_to_run(spec: SweepSpec, store: ResultStore) -> int:
    """Tune trials a run of `spec` would start now (0: nothing to train, no Ray needed)."""
    if spec.name not in store.sweeps():  # a new sweep: all of it (no store to read)
        return spec.plan().total
    return plan_todo(spec, store).tune_count


def _start_early(num_cpus: int | None) -> ray_setup.BackgroundStart:
    """An embedded Ray started in the background, Tune's environment set first (Ray's start
    reads some of it) and Tune's modules imported in that thread once Ray is up."""
    _prepare_tune()
    return ray_setup.BackgroundStart(num_cpus, then=_import_fit_modules)


def _take_early(options: SweepOptions) -> ray_setup.BackgroundStart | None:
    """The early start `ray_started_early` made for this call, if it fits its options."""
    if _EARLY and options.address is None and _EARLY[0][1] == options.num_cpus:
        return _EARLY.pop()[0]
    return None


def _run_sweep(spec: SweepSpec | str | os.PathLike[str], results_root: str | os.PathLike[str] | None, report: SweepReport,
               options: SweepOptions, started: float) -> SweepReport:
    early = _take_early(options)  # Ray started by ray_started_early around this call
    try:
        if not isinstance(spec, SweepSpec):
            spec = load_spec(spec)
        results_root = paths.normalize_root(os.fspath(results_root) if results_root is not None else default_results_root())
        plan = spec.plan()
        store = ResultStore(results_root)
        report.sweep, report.planned = spec.name, plan.total
        vectorize = options.train_fn is None  # a replacement train function trains one seed: no cell runs vectorized
        todo = plan_todo(spec, store, vectorize=vectorize)
        report.skipped, report.to_run = todo.skipped, todo.count
        if todo.count == 0 and not controls_pass.pending(spec, store) and not checkpoints.trial_folders(results_root, spec.name):
            release_dead_lease(results_root, spec.name)  # a driver killed after its last trial: the ended sweep keeps no lease
            report.wall_seconds = time.perf_counter() - started
            return report
        from hidden_core.tune.trackers import tracker_callbacks

        # a missing tracker extra fails here, before the lease and Ray
        options = dataclasses.replace(options, callbacks=(*options.callbacks, *tracker_callbacks(spec.loggers, results_root, spec.name)))
        # a cluster that will not let this driver in fails here, before anything is written
        checked = False
        if options.address is None and not options.skip_resource_check:  # refused here, before the lease writes anything
            check_resources(spec, ray_setup.local_nodes(spec.resources.gpu > 0))
        if options.address and not ray_setup.ray_initialized():
            options, checked = dataclasses.replace(options, address=ray_setup.check_address(options.address)), True
        if early is None and todo.tune_count and options.address is None and not ray_setup.ray_initialized():
            # Ray's processes come up while the lease is taken and the store read again; a refusal
            # from here on stops them (the finally below)
            early = _start_early(options.num_cpus)
        with SweepLease(results_root, spec.name):
            todo = plan_todo(spec, store, vectorize=vectorize)  # again, now that no other driver can change it
            _finish_killed_driver(spec, store, results_root)
            report.skipped, report.to_run = todo.skipped, todo.count
            if todo.count:
                store.mark_sweep(spec.name)  # the folder is a sweep from now on (paths.SWEEP_MARKER)
                _run(spec, store, results_root, todo, report, options, checked=checked, early=early)
            if early is not None:
                early.stop()  # nothing was trained after all (another driver finished it); a no-op once _run took it
            if report.controls is None:  # not run as Ray tasks by _run (nothing was trained): in this process
                report.controls = controls_pass.run(spec, store, out=options.out)  # the spec's subnet_controls, after the trials
    finally:
        if early is not None:
            with _signal_held():  # stop waits for Ray's start: a signal then must not cut it short
                early.stop()  # a refusal or an error: the Ray started early goes (a no-op once _run took it over)
    report.wall_seconds = time.perf_counter() - started
    return report


def _finish_killed_driver(spec: SweepSpec, store: ResultStore, results_root: str) -> None:
    """A driver killed between a trial's final row and deleting its checkpoint left the
    checkpoint (and maybe no subnet file yet): finish that trial's ending now, and say so."""
    if spec.name not in store.sweeps():
        return
    aside = store.set_aside_unreadable(spec.name)  # found by plan_todo's reads
    if aside:
        log.warning("sweep %s: set aside %d unreadable part file(s) of an interrupted write (renamed to .broken-<name>; "
                    "their rows are lost, the trials run again): %s", spec.name, len(aside), ", ".join(aside[:10]))
    left = checkpoints.trial_folders(results_root, spec.name)
    if not left:
        return
    from hidden_core.records import FINAL_STATUSES

    rows = store.load_trials(spec.name, where=f"status in {sorted(FINAL_STATUSES)}", columns=["trial_id", "status"])
    final = dict(zip(rows["trial_id"], rows["status"], strict=True))
    planned = spec.plan().by_id
    configs = {t: planned[t].config.model_dump(mode="json") for t in left if t in final and t in planned}
    done = checkpoints.finish_final(results_root, spec.name, final, configs)
    if done:
        log.warning("sweep %s: %d trial(s) already final kept a checkpoint (an earlier driver was killed); "
                    "their subnet files are made and checkpoints removed: %s", spec.name, len(done), ", ".join(done[:10]))


def _prepare_tune() -> None:
    """Tune's driver-side settings: before Ray's start and Tune's import (in _run, or before
    an early start)."""
    for k, v in ray_setup.TUNE_ENV.items():
        os.environ.setdefault(k, v)
    # with the per-trial loggers off, Tune's end-of-run analysis has no files to read
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)


def _run(spec: SweepSpec, store: ResultStore, results_root: str, todo: Todo, report: SweepReport, options: SweepOptions, *,
         checked: bool, early: ray_setup.BackgroundStart | None = None) -> None:
    from hidden_core.tune.sweep_data import check_data, load_data

    started = time.perf_counter()
    _prepare_tune()
    run_values = spec.run_options().model_dump(mode="json")
    configs = [t.config for t in todo.trials] + [p.template for p, _ in todo.points]
    check_data(configs, run_values)

    # Ray start-up and data loading overlap: the data thread imports torch and builds the
    # splits while the Ray processes come up, then imports what _fit uses (Ray Tune: about
    # 0.9 s of the driver's CPU, which ray.init's waits for its processes leave free).
    data_box: dict[str, Any] = {}

    def load() -> None:
        try:
            data_box["data"] = load_data(configs, run_values)
            _import_fit_modules()
        except BaseException as err:  # re-raised in the main thread
            data_box["error"] = err

    loader = threading.Thread(target=load, name="hidden-data", daemon=True)
    loader.start()
    ray_started: ray_setup.EmbeddedRay | bool = False
    tune_dir = None
    try:
        if early is not None:
            # its thread also imported Tune's modules; a signal during the wait or the hand-over
            # is raised once ray_started holds the Ray (the finally stops it), not in between
            with _signal_held():
                ray_started = early.result()
        else:
            ray_started = ray_setup.start_ray(options.address, options.num_cpus, checked=checked)
        _Signals.install()  # ray.init may have put its own in place
        import ray

        nodes = ray_setup.cluster_nodes()
        if not options.skip_resource_check:
            check_resources(spec, nodes)
        loader.join()
        if "error" in data_box:
            raise data_box["error"]
        data_refs = {key: ray.put(splits) for key, splits in data_box.pop("data").items()}
        report.concurrency = min(max(1, options.max_concurrent or spec.max_concurrent or ray_setup.capacity(spec, nodes)), max(todo.tune_count, 1))
        todo.trials = longest_first(todo.trials, slots=report.concurrency)  # torch is imported by now (the data thread)
        os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(report.concurrency)
        tune_dir = _tune_dir(ray_started)
        _fit(spec, store, results_root, todo, report, options, run_values=run_values, data_refs=data_refs, tune_dir=tune_dir,
             started=started, ray_started=ray_started)
        from hidden_core.tune import controls_tasks

        @contextlib.contextmanager
        def scoring_here() -> Iterator[None]:  # the driver scoring a trial itself: a signal raises at once, as outside Tune
            _Signals.in_fit = False
            try:
                if _Signals.received is not None:
                    raise SweepInterrupted(_Signals.received)
                yield
            finally:
                _Signals.in_fit = True

        in_trials = report.controls_in_trials
        if in_trials is not None and (in_trials.trials or in_trials.skipped):
            store.compact_controls(spec.name)  # one part file a trial, written as the trials ended
            print(f"controls: {in_trials.trials} trials scored in their own workers as they ended, {in_trials.rows} rows "
                  f"({in_trials.seconds:.1f}s of the trials' time)", file=options.out or sys.stdout, flush=True)
        _Signals.in_fit = True  # as in Tune's loop (a handler raising inside ray.wait comes out a SystemError): the pass stops at its next wait
        try:  # on the sweep's Ray, before it stops
            report.controls = controls_tasks.run(spec, store, data_refs=data_refs, out=options.out, stop=lambda: _Signals.received is not None,
                                                 scoring_here=scoring_here)
        finally:
            _Signals.in_fit = False
        if _Signals.received is not None:
            raise SweepInterrupted(_Signals.received)
    finally:
        loader.join()
        if tune_dir is not None and not isinstance(ray_started, ray_setup.EmbeddedRay):
            import shutil

            shutil.rmtree(tune_dir, ignore_errors=True)
        if ray_started and not options.keep_ray:
            ray_setup.stop_ray(ray_started)
        checkpoints.remove_empty_root(results_root, spec.name)


def _tune_dir(ray_started: ray_setup.EmbeddedRay | bool) -> str:
    """Where Tune keeps its bookkeeping for this run: driver-local, never restored. With an
    embedded Ray, inside its temp dir (removed with it); else a folder of its own."""
    if isinstance(ray_started, ray_setup.EmbeddedRay) and ray_started.folder:
        return os.path.join(ray_started.folder, "tune")
    root = ray_setup.embedded_root()
    root.mkdir(parents=True, exist_ok=True)
    return tempfile.mkdtemp(prefix=f"{os.getpid()}-tune-", dir=root)


def _signal_stopper() -> Any:
    """A Tune Stopper that ends every trial once SIGINT or SIGTERM was received."""
    from ray.tune.stopper import Stopper

    class _SignalStopper(Stopper):
        def __call__(self, trial_id: str, result: dict) -> bool:
            return _Signals.received is not None

        def stop_all(self) -> bool:
            return _Signals.received is not None

    return _SignalStopper()


def _import_fit_modules() -> None:
    """The modules _fit imports (Ray Tune with them), imported ahead (runner._run's data thread)."""
    import ray.tune  # noqa: F401

    from hidden_core.tune import driver_state, progress, pruning, search, trainable, tune_callbacks  # noqa: F401


def _fit(spec: SweepSpec, store: ResultStore, results_root: str, todo: Todo, report: SweepReport, options: SweepOptions, *,
         run_values: dict[str, Any], data_refs: dict[tuple, Any], tune_dir: str, started: float,
         ray_started: ray_setup.EmbeddedRay | bool = False) -> None:
    from ray import tune

    from hidden_core.tune.driver_state import SweepRuntime
    from hidden_core.tune.progress import Progress
    from hidden_core.tune.provenance import provenance
    from hidden_core.tune.pruning import CellStudies, PruningScheduler, default_study_storage
    from hidden_core.tune.search import SweepSearcher
    from hidden_core.tune.trainable import sweep_trainable
    from hidden_core.tune.tune_callbacks import (
        ConfigCopiesCleanup,
        SweepCallback,
        trial_dirname,
        trial_name,
    )

    studies = None
    if spec.pruner.enabled or spec.search:
        url = options.study_storage or spec.study_storage or default_study_storage(results_root, spec.name)
        studies = CellStudies(spec, url)
    progress = options.progress
    progress_obj = progress if (progress is not None and not isinstance(progress, bool)) else (Progress(spec, out=options.out) if progress else None)
    runtime = SweepRuntime(spec, store, results_root, studies=studies, run_values=run_values, provenance=provenance(), progress=progress_obj)
    if options.report_every_s is not None:
        runtime.report_every_s = float(options.report_every_s)
    runtime.load(todo)
    report.startup_seconds = time.perf_counter() - started

    trainable = tune.with_parameters(sweep_trainable, data_refs=data_refs, train_fn=options.train_fn)
    trainable = tune.with_resources(trainable, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
    try:
        if progress_obj is not None:
            from hidden_core.tune.progress import plan_work

            progress_obj.start(todo.count, report.concurrency, work=plan_work(todo))
        if studies is not None:
            studies.fail_stale(runtime.wanted_cells | {t.cell_id for t in todo.trials})
        fit_started = time.perf_counter()
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=SweepSearcher(runtime),
                scheduler=PruningScheduler(runtime),
                num_samples=todo.tune_count,
                max_concurrent_trials=report.concurrency,
                reuse_actors=True,
                trial_name_creator=trial_name,
                trial_dirname_creator=trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=TUNE_EXPERIMENT,
                storage_path=tune_dir,
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                callbacks=[SweepCallback(runtime), *options.callbacks, ConfigCopiesCleanup()],  # the cleanup after the trackers
                stop=_signal_stopper(),
                verbose=0,
            ),
        )
        _Signals.in_fit = True
        try:
            with ray_setup.without_callback_telemetry(), ray_setup.trials_on_started_workers(ray_started):
                tuner.fit()
        finally:
            _Signals.in_fit = False
        report.fit_seconds += time.perf_counter() - fit_started
        if _Signals.received is not None:
            raise SweepInterrupted(_Signals.received)
        report.unfinished = runtime.unfinished()
    finally:
        report.trials = list(runtime.summaries)
        if spec.subnet_controls is not None:
            report.controls_in_trials = runtime.controls
        report.resumed = sum(1 for s in report.trials if s.resumed_from_epoch)
        if progress_obj is not None:
            progress_obj.finish()
