"""Closed loop: the brain extends the proboscis, the proboscis touches sugar, sugar drives the brain.

A tutorial of :class:`brainfly.gym.BrainEnv` (``pip install brainfly[gym]``) with a body
model written here, in a few lines:

* the brain's *output* is MN9, the motor neuron of proboscis extension: the proboscis's
  extension (0 = retracted, 1 = fully extended) follows MN9's rate (mean of the MN9s, Hz,
  over the last 50 ms) through a first-order low-pass filter (time constant ``TAU_MS``);
  ``FULL_HZ`` of MN9 extends it fully;
* the proboscis touches a sugar drop while its extension exceeds ``TOUCH_AT``;
* the brain's *input* is the sugar gustatory receptor neurons (GRNs): driven at
  ``SUGAR_HZ`` while the proboscis touches the drop, at ``BASELINE_HZ`` otherwise, and at
  ``SUGAR_HZ`` for the first ``TASTE_MS`` (a first taste, on the legs, that starts it).

Each control step (1 ms): the body's state gives the GRNs' rate (the env's *action*), the
brain advances 1 ms and gives MN9's rate (the env's *observation*), and the body moves.

    python examples/closed_loop_proboscis.py --data synthetic --seconds 2 --out closed_loop_proboscis.png

What it shows on the synthetic brain (2 s, seed 0; ``--taste-ms`` varies the first taste):
the first taste brings MN9 to 60-100 Hz, the proboscis reaches the drop at 74 ms, and from
then on the sugar it touches keeps MN9 there: the loop latches (a bistable switch), touching
96 % of the time, without oscillating. A taste of 50 ms starts it too (MN9's response
outlasts the taste: first touch at 68-74 ms, seeds 0-3); at 40-45 ms it starts for some
seeds only, and at 30 ms never (at the 10 Hz baseline MN9 stays near 0 Hz).

Use ``--data flywire-783`` for the fly's connectome. On the synthetic brain the figure shows
what the loop does on a generated network, not what the fly does: it says SYNTHETIC.
"""

from __future__ import annotations

import argparse
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from brainfly.gym import BrainEnv  # noqa: E402

# the body model
TAU_MS = 50.0  # time constant of the proboscis's extension, ms
FULL_HZ = 60.0  # MN9's rate that extends the proboscis fully, Hz
TOUCH_AT = 0.5  # the proboscis touches the drop while extended beyond this
SUGAR_HZ = 200.0  # the sugar GRNs' rate while touching sugar, Hz
BASELINE_HZ = 10.0  # ... and otherwise, Hz
TASTE_MS = 100.0  # the first taste: sugar at SUGAR_HZ from t = 0 for this long, ms
DT_MS = 1.0  # the control step, ms


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="synthetic", help="connectome: synthetic, flywire-783 or a folder")
    ap.add_argument("--seconds", type=float, default=2.0, help="simulated time, s")
    ap.add_argument("--out", default="closed_loop_proboscis.png", help="the figure (PNG)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the brain's Poisson input")
    ap.add_argument("--taste-ms", type=float, default=TASTE_MS, help="the first taste of sugar, ms")
    args = ap.parse_args(argv)

    # the brain: sugar GRNs in (Hz), MN9 out (Hz); no episode end (the loop decides)
    env = BrainEnv(data=args.data, sensory={"sugar": "sugar_GRN"}, motor={"MN9": "MN9"}, dt_ms=DT_MS,
                   max_rate_hz=SUGAR_HZ, max_steps=None, progress=True)
    t0 = time.perf_counter()
    env.reset()
    env.step([0.0])  # the first step of a process compiles the stepping code (seconds)
    compile_s = time.perf_counter() - t0
    obs, info = env.reset(seed=args.seed)  # back to t = 0: a resting brain

    n = int(round(args.seconds * 1e3 / DT_MS))
    t_ms = np.arange(1, n + 1) * DT_MS
    mn9_hz, extension, touching, drive_hz = (np.zeros(n) for _ in range(4))
    ext, touch = 0.0, False
    t0 = time.perf_counter()
    for k in range(n):
        # body -> brain: what the GRNs sense now
        drive = SUGAR_HZ if touch or k * DT_MS < args.taste_ms else BASELINE_HZ
        obs, _, _, _, info = env.step([drive])
        # brain -> body: MN9's rate moves the proboscis (exact solution of de/dt = (target - e) / tau)
        target = min(float(obs[0]) / FULL_HZ, 1.0)
        ext = target + (ext - target) * np.exp(-DT_MS / TAU_MS)
        touch = ext > TOUCH_AT
        mn9_hz[k], extension[k], touching[k], drive_hz[k] = obs[0], ext, touch, drive
    wall_s = time.perf_counter() - t0

    net = env.sim.net
    fig, axes = plt.subplots(4, 1, sharex=True, figsize=(8, 7))
    axes[0].plot(t_ms, mn9_hz, color="tab:red")
    axes[0].set_ylabel("MN9 rate (Hz)")
    axes[1].plot(t_ms, extension, color="tab:blue")
    axes[1].axhline(TOUCH_AT, color="grey", ls="--", lw=0.8, label="touches the drop")
    axes[1].set_ylim(-0.05, 1.05)
    axes[1].set_ylabel("extension")
    axes[1].legend(loc="lower right", fontsize=8)
    axes[2].fill_between(t_ms, touching, step="pre", color="tab:green", alpha=0.6)
    axes[2].set_ylim(-0.05, 1.05)
    axes[2].set_yticks([0, 1], ["no", "yes"])
    axes[2].set_ylabel("touching")
    axes[3].plot(t_ms, drive_hz, color="tab:orange", drawstyle="steps-pre")
    axes[3].set_ylabel("sugar GRNs (Hz)")
    axes[3].set_xlabel("time (ms)")
    title = f"Closed-loop proboscis extension on {net.name}"
    if net.synthetic:
        title = "SYNTHETIC brain (a generated network, not the fly): " + title
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    plt.close(fig)

    first = np.flatnonzero(touching)
    print(f"{net.label}: {args.seconds:g} s simulated in {wall_s:.2f} s of the loop "
          f"({args.seconds / wall_s:.2f} simulated s per wall s, {n} control steps of {DT_MS:g} ms; "
          f"compiling first: {compile_s:.1f} s)")
    print(f"touching the sugar {touching.mean():.0%} of the time"
          + (f" (first at {t_ms[first[0]]:.0f} ms)" if first.size else " (never)")
          + f"; mean MN9 rate {mn9_hz.mean():.1f} Hz; brain runaway: {info['runaway'] is not None}")
    print(f"figure: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
