"""The embedded local Ray as a user sees it start (hidden_core/tune/ray_setup.py)."""

import os
import subprocess
import sys
import textwrap

import pytest

# One embedded Ray for the slow tests below (each start costs seconds of CI): it reports its
# auth mode, then runs two actors that each get SIGTERM inside a weakref callback, as
# _SIGTERM_IN_A_CALLBACK below: one with the hook the trial workers install, one without.
_EMBEDDED = textwrap.dedent(
    """
    import os, signal, time, weakref
    import ray
    from ray._raylet import AuthenticationMode, get_authentication_mode
    from hidden_core.tune.ray_setup import EmbeddedRay, quiet_sigterm_exit

    @ray.remote(num_cpus=0)
    class Worker:
        def pid(self):
            return os.getpid()

        def sigterm_in_a_callback(self, hook):
            if hook:
                quiet_sigterm_exit()

            class Thing:
                pass

            def callback(_ref):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(2)

            thing = Thing()
            ref = weakref.ref(thing, callback)
            del thing
            return "went on"

    embedded = EmbeddedRay(num_cpus=1)
    embedded.start()
    try:
        print("token auth:", get_authentication_mode() == AuthenticationMode.TOKEN)
        for hook in (True, False):
            worker = Worker.remote()
            print("hook" if hook else "ray's handler alone", "pid", ray.get(worker.pid.remote()), flush=True)
            try:
                print("returned:", ray.get(worker.sigterm_in_a_callback.remote(hook)), flush=True)
            except ray.exceptions.RayActorError as lost:
                print("lost:", type(lost).__name__, flush=True)
        time.sleep(2)  # the workers' last lines reach this driver
    finally:
        embedded.stop()
    """
)


@pytest.fixture(scope="module")
def embedded_run():
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    out = subprocess.run([sys.executable, "-c", _EMBEDDED], capture_output=True, text=True, env=env, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.mark.slow
def test_embedded_ray_starts_with_token_auth_and_without_the_opt_out_notice(embedded_run):
    """Every local sweep printed Ray's 'Set RAY_AUTH_MODE=disabled to opt out'; token auth
    itself must stay on."""
    assert "token auth: True" in embedded_run.stdout
    assert "opt out" not in embedded_run.stderr and "RAY_AUTH_MODE" not in embedded_run.stderr, embedded_run.stderr[-3000:]


@pytest.mark.slow
def test_a_ray_worker_with_the_hook_ends_quietly_on_sigterm_in_a_callback(embedded_run):
    """A sweep's end printed a trial worker's "Exception ignored in ... WeakSet ... SystemExit:
    1" (Ray 2.60's own SIGTERM handler). With the hook the worker ends quietly and its actor
    is lost (as any worker ended mid-trial: Tune retries it); without it, Ray's handler alone
    prints the traceback and the worker goes on - which shows this test meets the real case."""
    lines = embedded_run.stdout.splitlines()
    hooked = next(line.split()[-1] for line in lines if line.startswith("hook pid"))
    alone = next(line.split()[-1] for line in lines if line.startswith("ray's handler alone pid"))
    assert "lost: ActorDiedError" in lines, embedded_run.stdout
    assert "returned: went on" in lines, embedded_run.stdout  # Ray's handler alone: the exit was lost
    assert f"pid={hooked})" not in embedded_run.stderr + embedded_run.stdout, embedded_run.stderr[-3000:]
    said = [line for line in (embedded_run.stderr + embedded_run.stdout).splitlines() if f"pid={alone})" in line]
    assert any("Exception ignored" in line for line in said) and any("SystemExit: 1" in line for line in said), embedded_run.stderr[-3000:]

# A weakref callback that receives SIGTERM while it runs: what a trial worker met at a sweep's
# end (the raylet ending it while a WeakSet's _remove ran). The callback sends the signal
# itself, so that it lands inside the callback every time.
_SIGTERM_IN_A_CALLBACK = """
import os, signal, time, weakref
{install}
class Thing:
    pass

def callback(_ref):
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(2)  # the handler runs here, inside the callback

thing = Thing()
ref = weakref.ref(thing, callback)
del thing
print("went on after SIGTERM", flush=True)
"""


def test_sigterm_inside_a_weakref_callback_ends_a_worker_quietly():
    """Ray's worker loop turns SIGTERM into SystemExit(1) (ray/_private/worker.py
    sigterm_handler; here the same handler, without starting Ray); inside a weakref callback
    Python printed "Exception ignored in ... SystemExit: 1" and the process went on. With
    the hook every trial worker installs, it exits at once, quietly, with code 1 (a worker
    ended mid-trial is lost, as before: Tune retries its trial)."""
    install = textwrap.dedent(
        """
        import sys
        from hidden_core.tune.ray_setup import quiet_sigterm_exit

        def ray_sigterm_handler(signum, frame):  # ray._raylet.raise_sys_exit_with_custom_error_message
            error = SystemExit(1)
            error.ray_terminate_msg = "The process receives a SIGTERM."
            raise error

        signal.signal(signal.SIGTERM, ray_sigterm_handler)
        quiet_sigterm_exit()
        quiet_sigterm_exit()  # installing twice changes nothing
        """
    )
    out = subprocess.run([sys.executable, "-c", _SIGTERM_IN_A_CALLBACK.format(install=install)], capture_output=True,
                         text=True, timeout=60)
    assert "Exception ignored" not in out.stderr and "SystemExit" not in out.stderr, out.stderr[-3000:]
    assert out.stderr == "" and out.stdout == "", (out.stdout, out.stderr)
    assert out.returncode == 1


def test_other_unraisable_exceptions_still_reach_the_previous_hook():
    code = textwrap.dedent(
        """
        import sys, weakref
        from hidden_core.tune.ray_setup import quiet_sigterm_exit
        quiet_sigterm_exit()

        class Thing:
            pass

        def callback(_ref):
            raise ValueError("a real bug in a callback")

        thing = Thing()
        ref = weakref.ref(thing, callback)
        del thing
        print("went on", flush=True)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "went on" in out.stdout
    assert "Exception ignored" in out.stderr and "ValueError: a real bug in a callback" in out.stderr


def test_tuner_fit_skips_the_callback_tag_that_imports_the_tracker_integrations():
    """Tune tags its callbacks for Ray's usage statistics on every fit (a sweep always passes
    its own callback), importing Ray's tracker integrations and mlflow and wandb with them:
    seconds of the driver's CPU before the first trial. The sweep's fit runs without that
    tag; outside it Tune's function is back."""
    code = textwrap.dedent(
        """
        import sys
        from ray.air._internal import usage
        from hidden_core.tune.ray_setup import without_callback_telemetry

        original = usage.tag_callbacks
        with without_callback_telemetry():
            usage.tag_callbacks([object()])  # what ray/tune/tune.py calls in Tuner.fit
        print("integrations imported:", any(m.startswith("ray.air.integrations.") for m in sys.modules))
        print("restored:", usage.tag_callbacks is original)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "integrations imported: False" in out.stdout and "restored: True" in out.stdout, out.stdout


def test_trial_actors_skip_tunes_runtime_env_only_where_the_embedded_workers_already_have_it(monkeypatch):
    """Tune registers every trainable with an env_vars runtime_env; an embedded Ray's workers
    already have those values (EmbeddedRay.worker_env), so the sweep registers it without
    one. A variable set after Ray started, or a cluster, keeps Tune's own registration."""
    from ray.tune.execution import class_cache

    from hidden_core.tune import ray_setup

    class Trainable:
        pass

    embedded = ray_setup.EmbeddedRay(1)
    embedded.worker_env = {**os.environ, **ray_setup.EMBEDDED_WORKER_ENV}
    original = class_cache._ActorClassCache.get
    with ray_setup.trials_on_started_workers(embedded):
        assert class_cache._ActorClassCache().get(Trainable)._default_options.get("runtime_env") is None
        monkeypatch.setenv("RAY_CHDIR_TO_TRIAL_DIR", "1")  # set after Ray started: the workers lack it
        options = class_cache._ActorClassCache().get(Trainable)._default_options
        assert options["runtime_env"]["env_vars"]["RAY_CHDIR_TO_TRIAL_DIR"] == "1"
    assert class_cache._ActorClassCache.get is original
    with ray_setup.trials_on_started_workers(True):  # a cluster: Tune's own registration
        assert class_cache._ActorClassCache.get is original


@pytest.mark.slow  # a real embedded Ray and one Tune trial (seconds)
def test_a_tune_trial_runs_on_a_worker_the_raylet_started_with_the_sweeps_ray(ray_root, monkeypatch):
    """Before: Tune's runtime_env sent each trial to a new process (setup_worker, the runtime
    env agent, a second Python start) while the raylet's own workers sat idle."""
    import time

    import ray
    from ray import tune

    from hidden_core.tune import ray_setup

    monkeypatch.setenv("HIDDEN_RAY_TEMP", str(ray_root))

    def trainable(config):
        tune.report({"pid": os.getpid()})

    embedded = ray_setup.EmbeddedRay(1)
    embedded.start()
    try:
        deadline = time.monotonic() + 60
        workers: set[int] = set()
        while not workers and time.monotonic() < deadline:
            time.sleep(0.2)
            workers = {pid for pid in ray_setup.processes_of(embedded.folder)
                       if open(f"/proc/{pid}/cmdline", "rb").read().startswith(b"ray::IDLE")}  # started and registered
        assert workers, "the raylet started no Python worker"
        tuner = tune.Tuner(tune.with_resources(trainable, {"cpu": 1}), tune_config=tune.TuneConfig(num_samples=1),
                           run_config=tune.RunConfig(storage_path=os.path.join(embedded.folder, "tune"), verbose=0))
        with ray_setup.without_callback_telemetry(), ray_setup.trials_on_started_workers(embedded):
            results = tuner.fit()
        assert results[0].metrics["pid"] in workers
        assert ray.is_initialized()
    finally:
        embedded.stop()
