"""The embedded local Ray as a user sees it start (hidden_core/tune/ray_setup.py)."""

import os
import subprocess
import sys
import textwrap

import pytest


@pytest.mark.slow
def test_embedded_ray_starts_with_token_auth_and_without_the_opt_out_notice():
    """Every local sweep printed Ray's 'Set RAY_AUTH_MODE=disabled to opt out'; token auth
    itself must stay on."""
    code = textwrap.dedent(
        """
        from ray._raylet import AuthenticationMode, get_authentication_mode
        from hidden_core.tune.ray_setup import EmbeddedRay
        ray = EmbeddedRay(num_cpus=1)
        ray.start()
        try:
            print("token auth:", get_authentication_mode() == AuthenticationMode.TOKEN)
        finally:
            ray.stop()
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "token auth: True" in out.stdout
    assert "opt out" not in out.stderr and "RAY_AUTH_MODE" not in out.stderr, out.stderr[-3000:]
