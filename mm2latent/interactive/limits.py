"""Ranges the editor accepts for the numbers a request carries: noise seeds and edit strengths.

The CLI takes any int seed and any finite beta; the web page is a public surface (anyone who
can reach the port), so it refuses values no page control produces with one line and a fix.
"""

from __future__ import annotations

from mm2latent.batch_inputs import check_beta
from mm2latent_core.errors import ConfigError

# JSON numbers, and the page's number input, hold integers exactly only up to 2**53 - 1: a larger
# seed would come back rounded, and the provenance would name a seed that was not used.
SEED_MAX = 2**53 - 1
# The page's slider spans -3..3; a few times past it images leave the face manifold entirely.
BETA_LIMIT = 10.0


def check_seed(seed: int | None) -> int | None:
    """`seed` if None (constant noise) or in 0..SEED_MAX; ConfigError otherwise."""
    if seed is not None and not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"seed {seed} is outside 0..{SEED_MAX} (2**53 - 1, the largest integer a "
                          "JSON number holds exactly). Fix: choose a seed in that range, or none "
                          "for constant noise.")
    return seed


def check_slider_beta(beta: float) -> float:
    """`beta` as a finite float within +-BETA_LIMIT; ConfigError otherwise."""
    beta = check_beta(beta)
    if abs(beta) > BETA_LIMIT:
        raise ConfigError(f"beta={beta:g} is outside -{BETA_LIMIT:g}..{BETA_LIMIT:g}; the editor "
                          "takes strengths in that range (the slider spans -3..3). Fix: choose a "
                          "smaller beta.")
    return beta
